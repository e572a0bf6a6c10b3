fn main() {
    use clap::Parser;
    std::process::exit(impasto::cli::run(&impasto::cli::Cli::parse()));
}
