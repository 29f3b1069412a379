//! Finding the container a target means: by name, or as a compose service by its
//! `com.docker.compose.project` / `com.docker.compose.service` labels.

use bollard::models::ContainerInspectResponse;
use rollback_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::api::DockerApi;

/// A compose service: the labels compose puts on its containers.
///
/// ```
/// use rollback_docker::ComposeService;
/// let s: ComposeService = serde_json::from_str(r#"{"project": "shop", "service": "api"}"#).unwrap();
/// assert_eq!(s.service, "api");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComposeService {
    /// `com.docker.compose.project`.
    pub project: String,
    /// `com.docker.compose.service`.
    pub service: String,
}

/// Which container(s) a target means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    /// The container with this name.
    Container(String),
    /// The containers of a compose service.
    Compose(ComposeService),
}

impl Locator {
    /// Exactly one of `container` and `compose`, as target configs give them.
    pub fn from_config(target: &str, container: &Option<String>, compose: &Option<ComposeService>) -> Result<Self> {
        match (container, compose) {
            (Some(name), None) if valid_name(name) => Ok(Locator::Container(name.clone())),
            (Some(name), None) => Err(Error::invalid_input(format!("{target}: {name:?} is not a container name"))),
            (None, Some(service)) if !service.project.is_empty() && !service.service.is_empty() => {
                Ok(Locator::Compose(service.clone()))
            }
            (None, Some(_)) => Err(Error::invalid_input(format!("{target}: compose project and service must be set"))),
            (Some(_), Some(_)) => {
                Err(Error::invalid_input(format!("{target}: give `container` or `compose`, not both")))
            }
            (None, None) => Err(Error::invalid_input(format!("{target}: give `container` or `compose`"))),
        }
    }

    /// For identities and messages: `container:web` or `compose:shop/api`.
    pub fn describe(&self) -> String {
        match self {
            Locator::Container(name) => format!("container:{name}"),
            Locator::Compose(s) => format!("compose:{}/{}", s.project, s.service),
        }
    }

    /// Names of the containers meant (a compose service may have several), leaving
    /// out the side containers a recreate makes.
    pub async fn names(&self, api: &DockerApi) -> Result<Vec<String>> {
        let mut names = match self {
            Locator::Container(name) => api.container(name).await?.map(|_| vec![name.clone()]).unwrap_or_default(),
            Locator::Compose(s) => api
                .containers_labelled(&[
                    ("com.docker.compose.project", &s.project),
                    ("com.docker.compose.service", &s.service),
                ])
                .await?
                .into_iter()
                .filter_map(|c| c.names?.first().map(|n| n.trim_start_matches('/').to_string()))
                .filter(|n| !is_side_name(n))
                .collect(),
        };
        names.sort();
        if names.is_empty() {
            return Err(Error::not_found(format!("no {} on this docker engine", self.describe())));
        }
        Ok(names)
    }

    /// The one container meant; scaled compose services are refused by name.
    pub async fn one(&self, api: &DockerApi) -> Result<ContainerInspectResponse> {
        let names = self.names(api).await?;
        if names.len() > 1 {
            return Err(Error::invalid_input(format!(
                "{} has {} containers ({}); recreating scaled services is not supported, name one container",
                self.describe(),
                names.len(),
                names.join(", ")
            )));
        }
        api.container(&names[0]).await?.ok_or_else(|| Error::not_found(format!("container {} vanished", names[0])))
    }
}

/// Whether `name` is one a recreate made beside the real one.
pub(crate) fn is_side_name(name: &str) -> bool {
    name.contains("_rb_old_") || name.contains("_rb_new_")
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_way_to_find_it() {
        let service = Some(ComposeService { project: "shop".into(), service: "api".into() });
        assert_eq!(Locator::from_config("t", &None, &service).unwrap().describe(), "compose:shop/api");
        assert_eq!(Locator::from_config("t", &Some("web".into()), &None).unwrap().describe(), "container:web");
        for (container, compose) in [(Some("web".to_string()), service), (None, None), (Some("a b".into()), None)] {
            let err = Locator::from_config("t", &container, &compose).unwrap_err();
            assert_eq!(err.kind(), rollback_core::ErrorKind::InvalidInput);
        }
    }
}
