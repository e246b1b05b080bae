//! The `kiln` command line: parses arguments, runs the pipeline, prints data on stdout and
//! diagnostics on stderr. Exit 0 on success, 1 for errors in the input, 2 for usage or IO.

mod cli;

fn main() -> std::process::ExitCode {
    cli::run()
}
