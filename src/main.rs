fn main() {
    use clap::Parser;
    // (`--preset NAME` becomes its flags, those the line does not give itself.)
    let args = impasto::options::expand_args(std::env::args_os().collect());
    std::process::exit(impasto::cli::run(&impasto::cli::Cli::parse_from(args)));
}
