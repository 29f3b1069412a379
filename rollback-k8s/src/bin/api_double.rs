//! `rollback-k8s-api-double` (feature `api-double`): the Kubernetes API double as a
//! process, for tests in other languages (the Python package's). Prints its URL on
//! the first line of stdout and serves until stdin closes.

#[tokio::main]
async fn main() {
    let double = rollback_k8s::double::ApiDouble::start().await;
    println!("{}", double.url());
    // Serve until the parent closes our stdin (or dies).
    let _ = tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink())).await;
}
