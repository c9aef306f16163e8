//! The `spamward` binary: see `spamward --help`.

fn main() -> std::process::ExitCode {
    spamward::cli::main()
}
