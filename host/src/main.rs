//! The `spamward` binary: see `spamward --help`.

// Events are built by the reading thread and freed by whichever rule worker
// finishes with them last; mimalloc frees across threads without the arena
// locking glibc's malloc does, and is faster at the small strings events are
// made of.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    spamward::cli::main()
}
