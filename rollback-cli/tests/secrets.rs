//! Secrets given to the `rollback` binary never leak: a kubeconfig token, a Secret, an
//! HTTP header from the environment and a URL password reach no output, journal,
//! report, artifact or log line.

use std::sync::{Arc, Mutex};

const MARKER: &str = "mk7f3a9eSECRET";

/// A tiny HTTP server answering 200 to everything and keeping each request's
/// `Authorization` header, to prove the verifiers really sent their credentials.
async fn recording_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let auth = request
                    .lines()
                    .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("authorization")))
                    .map(|(_, v)| v.trim().to_string())
                    .unwrap_or_default();
                record.lock().unwrap().push(auth);
                let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            });
        }
    });
    (port, seen)
}

fn base64(bytes: &[u8]) -> String {
    serde_json::to_value(k8s_openapi::ByteString(bytes.to_vec())).unwrap().as_str().unwrap().to_string()
}

/// The credentials a plan file cannot hold: a kubeconfig user token (the API double
/// requires it, like a real API server), a Kubernetes Secret the snapshot copies, an
/// HTTP bearer header from the environment and a password in a verifier's URL. The
/// plan runs in a child `rollback` process (the header comes from its
/// environment) with every `rollback*` log at TRACE; the marker, plain or base64, is
/// in none of its output, journal, reports or artifacts.
#[tokio::test(flavor = "multi_thread")]
async fn a_marker_token_in_kubeconfig_secrets_and_headers_reaches_nothing() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::{Api, ListParams, PostParams};

    let double = rollback_k8s::double::ApiDouble::start_with(rollback_k8s::double::DoubleOptions {
        bearer_token: Some(MARKER.into()),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: double\nclusters:\n- name: double\n  cluster:\n    server: {}\n\
             contexts:\n- name: double\n  context:\n    cluster: double\n    user: deployer\n    namespace: default\n\
             users:\n- name: deployer\n  user:\n    token: {MARKER}\n",
            double.url()
        ),
    )
    .unwrap();
    let unauthenticated: Api<Secret> = Api::namespaced(double.client("default"), "default");
    let refused = unauthenticated.list(&ListParams::default()).await.expect_err("the double wants the token");
    assert!(refused.to_string().contains("401") || refused.to_string().contains("Unauthorized"), "{refused}");

    let cluster = rollback_k8s::Cluster::connect(&rollback_k8s::ClusterConfig {
        kubeconfig: Some(kubeconfig.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(cluster.client.clone(), "default");
    let secret: Secret = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "web-secret"}, "stringData": {"PASSWORD": MARKER}}),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app", "image": "web:v1",
                "envFrom": [{"secretRef": {"name": "web-secret"}}],
                "env": [{"name": "INLINE_TOKEN", "value": MARKER}]}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(cluster.client.clone(), "default")
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();

    let (port, seen) = recording_server().await;
    let plan = serde_json::json!({
        "name": "tokens everywhere",
        "snapshots": [{"kind": "k8s-deployment", "name": "web-evidence",
            "config": {"cluster": {"kubeconfig": kubeconfig}, "namespace": "default", "deployment": "web"}}],
        "verifiers": [
            {"kind": "http", "name": "api-bearer", "config": {"url": format!("http://127.0.0.1:{port}/health"),
                "headers_from_env": {"Authorization": "RB_SECRETS_API_AUTH"}}},
            {"kind": "http", "name": "api-basic", "secrets": {"url": {"from": "env", "var": "RB_SECRETS_API_URL"}}}
        ],
        "stages": [
            {"name": "evidence", "steps": [{"id": "web-evidence", "op": "snapshot", "snapshot": "web-evidence"}]},
            {"name": "checks", "steps": [
                {"id": "bearer", "op": "verify", "verifier": "api-bearer", "policy": {"interval": "50ms", "passes": 1, "deadline": "10s"}},
                {"id": "basic", "op": "verify", "verifier": "api-basic", "policy": {"interval": "50ms", "passes": 1, "deadline": "10s"}}
            ]}
        ]
    });
    let plan_file = dir.path().join("plan.json");
    let home = dir.path().join("home");
    let runner = |plan_file: &std::path::Path| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rollback"));
        cmd.args(["run", plan_file.to_str().unwrap(), "--home", home.to_str().unwrap()])
            .env("RB_SECRETS_API_AUTH", format!("Bearer {MARKER}"))
            .env("RB_SECRETS_API_URL", format!("http://ops:{MARKER}@127.0.0.1:{port}/health"));
        cmd
    };
    // A URL with a password in config (which is journaled) is refused before anything
    // runs, naming the key and not the password.
    let mut inline = plan.clone();
    inline["verifiers"][1]["config"] =
        serde_json::json!({ "url": format!("http://ops:{MARKER}@127.0.0.1:{port}/health") });
    inline["verifiers"][1]["secrets"] = serde_json::json!({});
    let inline_file = dir.path().join("inline.json");
    std::fs::write(&inline_file, serde_json::to_vec_pretty(&inline).unwrap()).unwrap();
    let refused = runner(&inline_file).output().await.unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&refused.stdout), String::from_utf8_lossy(&refused.stderr));
    assert!(!refused.status.success() && said.contains("URL with a password"), "{said}");
    assert!(!said.contains(MARKER), "the refusal does not echo the password: {said}");
    assert!(seen.lock().unwrap().is_empty(), "refused before any check ran");

    std::fs::write(&plan_file, serde_json::to_vec_pretty(&plan).unwrap()).unwrap();
    let out = runner(&plan_file)
        .env("RUST_LOG", "info,rollback_core=trace,rollback_k8s=trace,kube=debug")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "the plan ran\n{stdout}\n{stderr}");

    // The credentials were really used.
    let headers = seen.lock().unwrap().clone();
    assert!(headers.contains(&format!("Bearer {MARKER}")), "the bearer header was sent: {} requests", headers.len());
    assert!(
        headers.contains(&format!("Basic {}", base64(format!("ops:{MARKER}").as_bytes()))),
        "the URL's password was sent as basic auth"
    );
    let copies = secrets.list(&ListParams::default().labels("rollback.dev/copy-of=web-secret")).await.unwrap().items;
    assert_eq!(copies.len(), 1, "the snapshot (token-authenticated) copied the Secret inside the cluster");

    let haystacks = [
        ("journal, reports and artifacts", rollback_core::testkit::text_under(&home)),
        ("stdout", stdout),
        ("stderr (TRACE logs)", stderr),
    ];
    assert!(haystacks[0].1.contains("web-secret"), "the evidence names the Secret");
    assert!(haystacks[2].1.contains("rollback_core"), "the logs were captured");
    let forms = [MARKER.to_string(), base64(MARKER.as_bytes()), base64(format!("ops:{MARKER}").as_bytes())];
    for (what, text) in &haystacks {
        for form in &forms {
            let hits = text.matches(form.as_str()).count();
            assert_eq!(hits, 0, "{form:?} appears {hits} time(s) in the {what}: …{}…", {
                let at = text.find(form.as_str()).unwrap_or(0);
                &text[at.saturating_sub(200)..(at + 50).min(text.len())]
            });
        }
    }
}
