//! Diagnostics as plain data: spans into loaded source files, labels, help; rendered only at the edge.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;

/// Index of a file in [`Sources`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u32);

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, range: Range<usize>) -> Span {
        Span { file, start: range.start as u32, end: range.end as u32 }
    }
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Every file a run has read, so diagnostics can point into any of them.
#[derive(Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

pub struct SourceFile {
    /// The path as shown to the user (relative where it was given relative).
    pub name: String,
    pub path: PathBuf,
    pub text: String,
}

impl Sources {
    pub fn add(&mut self, name: String, path: PathBuf, text: String) -> FileId {
        self.files.push(SourceFile { name, path, text });
        FileId(self.files.len() as u32 - 1)
    }
    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }
    pub fn text(&self, id: FileId) -> &str {
        &self.get(id).text
    }
    pub fn len(&self) -> usize {
        self.files.len()
    }
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, id: FileId, offset: usize) -> (usize, usize) {
        let text = self.text(id);
        let offset = offset.min(text.len());
        let before = &text[..floor_char_boundary(text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
    /// Something the user should know that is not a problem (a module overriding a built-in).
    Note,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
    pub primary: bool,
}

/// One finding about the input. `code` is stable (`E…` for language errors, rule ids for checks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub labels: Vec<Label>,
    pub notes: Vec<String>,
    pub help: Option<String>,
    /// What a rule fired for (`hosts`, `services` or `routes`, and the name): an
    /// `[allow.RULE]` naming it waives the diagnostic.
    pub subject: Option<(&'static str, String)>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            labels: Vec::new(),
            notes: Vec::new(),
            help: None,
            subject: None,
        }
    }
    pub fn about(mut self, kind: &'static str, name: impl Into<String>) -> Diagnostic {
        self.subject = Some((kind, name.into()));
        self
    }
    pub fn warning(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, message) }
    }
    /// A diagnostic of severity [`Severity::Note`] (its notes are added with [`Diagnostic::note`]).
    pub fn info(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Note, ..Diagnostic::error(code, message) }
    }
    pub fn primary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label { span, message: message.into(), primary: true });
        self
    }
    pub fn secondary(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label { span, message: message.into(), primary: false });
        self
    }
    pub fn note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }
    pub fn with_help(self, help: Option<String>) -> Diagnostic {
        match help {
            Some(h) => self.help(h),
            None => self,
        }
    }
    pub fn primary_span(&self) -> Option<Span> {
        self.labels.iter().find(|l| l.primary).map(|l| l.span)
    }
}

/// Collects every diagnostic of a run; phases push into it and carry on where they can.
#[derive(Default, Debug)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }
    pub fn extend(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        self.items.extend(ds);
    }
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// Order by file and position so output does not depend on the order phases ran in.
    pub fn sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|d| {
            let s = d.primary_span();
            (s.map(|s| (s.file, s.start)), d.code, d.message.clone())
        });
        self.items.dedup();
        self.items
    }
}

/// A diagnostic located as `file:line:col`, for JSON output and tests. Control characters
/// are shown visibly ([`visible`]).
pub struct Located<'a> {
    pub sources: &'a Sources,
    pub diag: &'a Diagnostic,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(span) = self.diag.primary_span() {
            let (l, c) = self.sources.line_col(span.file, span.start as usize);
            write!(f, "{}:{}:{}: ", visible(&self.sources.get(span.file).name), l, c)?;
        }
        let level = match self.diag.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        write!(f, "{level}[{}]: {}", self.diag.code, visible(&self.diag.message))
    }
}

/// Renders diagnostics the way rustc does: `file:line:col`, the source line, labels, help.
/// This is the one place diagnostics become terminal text: every file name, source line,
/// message, label and note passes through [`visible`], so input cannot send escape sequences
/// to the terminal; label spans are moved to match.
/// Only the files a label points into are read (a build's sources include every module file of
/// the library: made visible each time, they were most of the cost of a one-line error).
pub fn render(sources: &Sources, diags: &[Diagnostic], color: bool) -> String {
    let labelled: std::collections::BTreeSet<u32> = diags.iter().flat_map(|d| d.labels.iter().map(|l| l.span.file.0)).collect();
    let mut files = SimpleFiles::new();
    let mut shifts = Vec::with_capacity(sources.len());
    for i in 0..sources.len() {
        let f = sources.get(FileId(i as u32));
        let (text, shift) = if labelled.contains(&(i as u32)) { visible_source(&f.text) } else { (String::new(), Shifts(Vec::new())) };
        files.add(visible(&f.name).into_owned(), text);
        shifts.push(shift);
    }
    let config = term::Config::default();
    let mut out = Vec::new();
    for d in diags {
        let cd = to_codespan(d, &shifts);
        if color {
            let mut buf = term::termcolor::Ansi::new(&mut out);
            let _ = term::emit_to_write_style(&mut buf, &config, &files, &cd);
        } else {
            let _ = term::emit_to_io_write(&mut out, &config, &files, &cd);
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn to_codespan(d: &Diagnostic, shifts: &[Shifts]) -> cs::Diagnostic<usize> {
    let sev = match d.severity {
        Severity::Error => cs::Severity::Error,
        Severity::Warning => cs::Severity::Warning,
        Severity::Note => cs::Severity::Note,
    };
    let labels = d
        .labels
        .iter()
        .map(|l| {
            let style = if l.primary { cs::LabelStyle::Primary } else { cs::LabelStyle::Secondary };
            let file = l.span.file.0 as usize;
            let range = match shifts.get(file) {
                Some(s) => s.map(l.span.start as usize)..s.map(l.span.end as usize),
                None => l.span.range(),
            };
            cs::Label::new(style, file, range).with_message(visible(&l.message))
        })
        .collect();
    let mut notes: Vec<String> = d.notes.iter().map(|n| visible(n).into_owned()).collect();
    if let Some(h) = &d.help {
        notes.push(format!("help: {}", visible(h)));
    }
    cs::Diagnostic::new(sev).with_code(d.code).with_message(visible(&d.message)).with_labels(labels).with_notes(notes)
}

/// How a character is shown to a terminal, if not as itself: C0 controls as their Control
/// Pictures (`␛`, `␇`), DEL as `␡`, C1 controls and bidirectional overrides as `\u{…}`.
/// Tab and newline stay.
fn shown(c: char) -> Option<String> {
    match c {
        '\t' | '\n' => None,
        '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).map(String::from),
        '\u{7f}' => Some("\u{2421}".into()),
        '\u{80}'..='\u{9f}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {
            Some(format!("\\u{{{:x}}}", c as u32))
        }
        _ => None,
    }
}

/// Text with every control character shown visibly ([`shown`]), for a terminal.
pub fn visible(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| shown(c).is_some()) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(s.chars().map(|c| shown(c).unwrap_or_else(|| c.to_string())).collect())
}

/// Where byte offsets move when a source is made [`visible`]: after each replaced character
/// (its offset in the original), the total growth so far.
struct Shifts(Vec<(usize, usize)>);

impl Shifts {
    fn map(&self, offset: usize) -> usize {
        let i = self.0.partition_point(|(at, _)| *at < offset);
        offset + if i == 0 { 0 } else { self.0[i - 1].1 }
    }
}

/// A source file made [`visible`], keeping the `\r` of `\r\n` line ends.
fn visible_source(text: &str) -> (String, Shifts) {
    let mut out = String::with_capacity(text.len());
    let mut shifts = Vec::new();
    let mut growth = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let crlf = c == '\r' && chars.peek().is_some_and(|(_, n)| *n == '\n');
        match shown(c).filter(|_| !crlf) {
            Some(r) => {
                growth += r.len() - c.len_utf8();
                shifts.push((i, growth));
                out.push_str(&r);
            }
            None => out.push(c),
        }
    }
    (out, Shifts(shifts))
}

/// The closest candidate to a misspelt name, if any is close enough.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_sent() {
        assert_eq!(visible("a\u{1b}[2Jb\u{7}"), "a\u{241b}[2Jb\u{2407}");
        assert_eq!(visible("\u{9b}31m\u{202e}"), "\\u{9b}31m\\u{202e}");
        assert_eq!(visible("tab\tline\n"), "tab\tline\n");
    }

    #[test]
    fn spans_move_with_the_replacements() {
        let text = "a = \"\u{1b}[31m\"\r\nb = 1\n";
        let (shown_text, shifts) = visible_source(text);
        assert!(shown_text.contains("\r\n") && !shown_text.contains('\u{1b}'));
        let b = text.find('b').unwrap();
        assert_eq!(&shown_text[shifts.map(b)..shifts.map(b + 1)], "b");
        let esc = text.find('\u{1b}').unwrap();
        assert_eq!(&shown_text[shifts.map(esc)..shifts.map(esc + 1)], "\u{241b}");
    }
}
