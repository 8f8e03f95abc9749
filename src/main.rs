use std::process::ExitCode;

/// mimalloc rather than the system allocator: decoding reviews allocates many small strings and
/// maps per request, and glibc's malloc showed up at the top of the server's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    kadmit::cli::main()
}
