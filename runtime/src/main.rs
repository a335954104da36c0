fn main() -> std::process::ExitCode {
    tokenhook::cli::main()
}
