// The judge of SYSTEM.md: parses every ```mermaid block of a Markdown file with mermaid's own parser.
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';
const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
globalThis.DOMParser = dom.window.DOMParser;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });
const text = readFileSync(process.argv[2], 'utf8');
const blocks = [...text.matchAll(/```mermaid\n([\s\S]*?)```/g)].map(m => m[1]);
if (blocks.length === 0) { console.error('no mermaid block'); process.exit(1); }
// parse() enforces the edge limit (flowchart.maxEdges); render() replaces a diagram longer than
// maxTextSize with an error message, so that limit is checked here.
const maxText = mermaid.mermaidAPI.getConfig().maxTextSize;
for (const b of blocks) {
  if (b.length > maxText) { console.error(`diagram of ${b.length} characters: mermaid renders at most ${maxText}`); process.exit(1); }
  try { await mermaid.parse(b); } catch (e) { console.error(String(e.message || e)); process.exit(1); }
}
