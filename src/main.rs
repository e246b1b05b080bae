//! The `kiln` command line: parses arguments, runs the pipeline, prints data on stdout and
//! diagnostics on stderr. Exit 0 on success, 1 for errors in the input, 2 for usage or IO.

mod cli;

/// mimalloc instead of glibc's malloc: a build allocates and frees millions of small strings
/// and maps (a quarter of `kiln check`'s instructions went to glibc's allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::run()
}
