//! `rollback`: validate, dry-run, run, resume and report rollback plans (see the
//! library, `rollback_cli`, and `rollback --help`).

fn main() {
    rollback_cli::main()
}
