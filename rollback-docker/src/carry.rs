//! Carrying a container's configuration over to its replacement: what the user set
//! (environment, mounts, ports, networks, labels, restart policy, healthcheck,
//! command), not what the old image supplied, so the new image's own defaults apply.

use std::collections::{HashMap, HashSet};

use bollard::models::{ContainerCreateBody, ContainerInspectResponse, EndpointSettings, ImageConfig, NetworkingConfig};

/// Labels this library stamps on containers it creates.
pub(crate) const LABEL_KEY: &str = "io.rollback.key";
/// The ID of the container a recreated one replaced.
pub(crate) const LABEL_REPLACES: &str = "io.rollback.replaces";

/// A create request for the replacement, and the further networks to connect it to
/// after creation (API 1.41 takes one network at create).
#[derive(Debug)]
pub(crate) struct Replacement {
    pub body: ContainerCreateBody,
    pub extra_networks: Vec<(String, EndpointSettings)>,
}

/// Builds the replacement of `old` running `image_ref`, stamped with `labels`.
/// `old_image` is the old image's config, whose defaults are not carried over.
pub(crate) fn replacement(
    old: &ContainerInspectResponse,
    old_image: Option<&ImageConfig>,
    image_ref: &str,
    labels: &[(&str, String)],
) -> Replacement {
    let config = old.config.clone().unwrap_or_default();
    let image = old_image.cloned().unwrap_or_default();
    let mut host_config = old.host_config.clone().unwrap_or_default();
    let network_mode = host_config.network_mode.clone().unwrap_or_default();
    let shares_host_names = network_mode == "host" || network_mode.starts_with("container:");

    let old_id = old.id.clone().unwrap_or_default();
    let short_id: String = old_id.chars().take(12).collect();
    let hostname = config.hostname.clone().filter(|h| !shares_host_names && *h != short_id && !h.is_empty());

    let mut carried_labels: HashMap<String, String> = config
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, v)| !k.starts_with("io.rollback.") && image.labels.as_ref().and_then(|l| l.get(k)) != Some(v))
        .collect();
    for (k, v) in labels {
        carried_labels.insert((*k).to_string(), v.clone());
    }

    let image_env: HashSet<&String> = image.env.iter().flatten().collect();
    let env: Vec<String> = config.env.iter().flatten().filter(|e| !image_env.contains(e)).cloned().collect();

    // Anonymous volumes (from the image's VOLUME lines) hold data: keep them, as compose does.
    let mut binds = host_config.binds.clone().unwrap_or_default();
    let bound: HashSet<String> = binds.iter().filter_map(|b| b.split(':').nth(1).map(str::to_string)).collect();
    let mounted: HashSet<String> = host_config.mounts.iter().flatten().filter_map(|m| m.target.clone()).collect();
    for mount in old.mounts.iter().flatten() {
        let (Some(name), Some(destination)) = (&mount.name, &mount.destination) else { continue };
        let anonymous =
            mount.typ.as_deref() == Some("volume") && name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit());
        if anonymous && !bound.contains(destination) && !mounted.contains(destination) {
            binds.push(format!("{name}:{destination}"));
        }
    }
    if !binds.is_empty() {
        host_config.binds = Some(binds);
    }

    let mut networks: Vec<(String, EndpointSettings)> = old
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|(name, endpoint)| (name, carried_endpoint(endpoint, &short_id)))
        .collect();
    networks.sort_by(|a, b| a.0.cmp(&b.0));
    let primary = networks.iter().position(|(name, _)| *name == network_mode);
    let endpoints_config = primary.map(|i| HashMap::from([networks.remove(i)]));
    let extra_networks = if shares_host_names || network_mode == "none" { Vec::new() } else { networks };

    let unless_image =
        |value: Option<Vec<String>>, default: &Option<Vec<String>>| value.filter(|v| Some(v) != default.as_ref());
    let body = ContainerCreateBody {
        hostname,
        domainname: config.domainname.clone().filter(|d| !d.is_empty() && !shares_host_names),
        user: config.user.clone().filter(|u| !u.is_empty() && Some(u) != image.user.as_ref()),
        attach_stdin: config.attach_stdin,
        attach_stdout: config.attach_stdout,
        attach_stderr: config.attach_stderr,
        exposed_ports: unless_image(config.exposed_ports.clone(), &image.exposed_ports),
        tty: config.tty,
        open_stdin: config.open_stdin,
        stdin_once: config.stdin_once,
        env: Some(env),
        cmd: unless_image(config.cmd.clone(), &image.cmd),
        healthcheck: config.healthcheck.clone().filter(|h| Some(h) != image.healthcheck.as_ref()),
        args_escaped: config.args_escaped,
        image: Some(image_ref.to_string()),
        volumes: unless_image(config.volumes.clone(), &image.volumes),
        working_dir: config.working_dir.clone().filter(|w| !w.is_empty() && Some(w) != image.working_dir.as_ref()),
        entrypoint: unless_image(config.entrypoint.clone(), &image.entrypoint),
        network_disabled: config.network_disabled,
        on_build: None,
        labels: Some(carried_labels),
        stop_signal: config.stop_signal.clone().filter(|s| Some(s) != image.stop_signal.as_ref()),
        stop_timeout: config.stop_timeout,
        shell: unless_image(config.shell.clone(), &image.shell),
        host_config: Some(host_config),
        networking_config: endpoints_config.map(|e| NetworkingConfig { endpoints_config: Some(e) }),
    };
    Replacement { body, extra_networks }
}

/// What the user set on a network endpoint; runtime fields (addresses the engine
/// assigned, endpoint IDs) and the automatic short-ID alias are left out.
fn carried_endpoint(endpoint: EndpointSettings, short_id: &str) -> EndpointSettings {
    let aliases: Vec<String> = endpoint.aliases.into_iter().flatten().filter(|a| a != short_id).collect();
    EndpointSettings {
        ipam_config: endpoint.ipam_config,
        links: endpoint.links.filter(|l| !l.is_empty()),
        aliases: (!aliases.is_empty()).then_some(aliases),
        driver_opts: endpoint.driver_opts,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, HostConfig, NetworkSettings};

    fn old() -> ContainerInspectResponse {
        ContainerInspectResponse {
            id: Some("0123456789abcdef".repeat(4)),
            config: Some(ContainerConfig {
                hostname: Some("0123456789ab".into()),
                env: Some(vec!["PATH=/bin".into(), "MODE=prod".into()]),
                cmd: Some(vec!["serve".into()]),
                labels: Some(HashMap::from([
                    ("team".into(), "api".into()),
                    ("from-image".into(), "yes".into()),
                    (LABEL_KEY.into(), "old-run".into()),
                ])),
                ..Default::default()
            }),
            host_config: Some(HostConfig { network_mode: Some("appnet".into()), ..Default::default() }),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([
                    (
                        "appnet".into(),
                        EndpointSettings {
                            aliases: Some(vec!["api".into(), "0123456789ab".into()]),
                            ip_address: Some("10.0.0.5".into()),
                            ..Default::default()
                        },
                    ),
                    ("monitoring".into(), EndpointSettings::default()),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn image() -> ImageConfig {
        ImageConfig {
            env: Some(vec!["PATH=/bin".into()]),
            cmd: Some(vec!["default".into()]),
            labels: Some(HashMap::from([("from-image".into(), "yes".into())])),
            ..Default::default()
        }
    }

    #[test]
    fn user_settings_are_carried_and_image_defaults_are_not() {
        let r = replacement(&old(), Some(&image()), "app:v1", &[(LABEL_KEY, "run-2".into())]);
        let body = r.body;
        assert_eq!(body.image.as_deref(), Some("app:v1"));
        assert_eq!(body.env, Some(vec!["MODE=prod".to_string()]));
        assert_eq!(body.cmd, Some(vec!["serve".to_string()]));
        assert_eq!(body.hostname, None, "the generated hostname follows the new container");
        let labels = body.labels.unwrap();
        assert_eq!(labels.get("team").map(String::as_str), Some("api"));
        assert!(!labels.contains_key("from-image"));
        assert_eq!(labels.get(LABEL_KEY).map(String::as_str), Some("run-2"));
    }

    #[test]
    fn the_primary_network_goes_in_the_create_call_and_others_after() {
        let r = replacement(&old(), Some(&image()), "app:v1", &[]);
        let endpoints = r.body.networking_config.unwrap().endpoints_config.unwrap();
        let appnet = &endpoints["appnet"];
        assert_eq!(appnet.aliases, Some(vec!["api".to_string()]), "the short-ID alias is the engine's, not ours");
        assert_eq!(appnet.ip_address, None, "engine-assigned addresses are not carried");
        assert_eq!(r.extra_networks.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), vec!["monitoring"]);
    }

    #[test]
    fn a_chosen_hostname_is_kept() {
        let mut old = old();
        old.config.as_mut().unwrap().hostname = Some("api-1".into());
        assert_eq!(replacement(&old, None, "x", &[]).body.hostname.as_deref(), Some("api-1"));
    }
}
