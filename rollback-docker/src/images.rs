//! A container's history: the images of its repository present on the engine, and
//! the images of retained old containers, newest first, identified by image ID.

use bollard::models::ContainerSummary;
use rollback_core::{Result, Revision, Version};

use crate::api::DockerApi;

/// The repository part of an image reference: `registry:5000/team/app:v2` →
/// `registry:5000/team/app`; digests and tags are dropped.
///
/// ```
/// use rollback_docker::repository_of;
/// assert_eq!(repository_of("registry:5000/team/app:v2"), "registry:5000/team/app");
/// assert_eq!(repository_of("app@sha256:abc"), "app");
/// assert_eq!(repository_of("app"), "app");
/// ```
pub fn repository_of(reference: &str) -> &str {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    match without_digest.rfind(':') {
        Some(colon) if !without_digest[colon..].contains('/') => &without_digest[..colon],
        _ => without_digest,
    }
}

/// A version for an image: its ID, labelled with its first tag in `repository`.
pub(crate) fn version_of(id: &str, tags: &[String], repository: &str) -> Version {
    let mut tags: Vec<&String> = tags.iter().filter(|t| repository_of(t) == repository).collect();
    tags.sort();
    match tags.first() {
        Some(tag) => Version::labeled(id, tag.as_str()),
        None => Version::new(id),
    }
}

/// The history of a container whose images come from `repository`: every local image
/// of the repository and of the retained containers, newest first.
pub(crate) async fn history(api: &DockerApi, repository: &str, retained: &[ContainerSummary]) -> Result<Vec<Revision>> {
    let mut ids: Vec<String> = api.images_of(repository).await?.into_iter().map(|i| i.id).collect();
    for container in retained {
        if let Some(image) = &container.image_id
            && !ids.contains(image)
        {
            ids.push(image.clone());
        }
    }
    let mut revisions = Vec::with_capacity(ids.len());
    for id in ids {
        let Some(image) = api.image(&id).await? else { continue };
        let tags = image.repo_tags.clone().unwrap_or_default();
        let mut description = if tags.is_empty() { "untagged".to_string() } else { tags.join(", ") };
        let used_by: Vec<&str> = retained
            .iter()
            .filter(|c| c.image_id.as_deref() == Some(id.as_str()))
            .filter_map(|c| c.names.as_ref()?.first().map(|n| n.trim_start_matches('/')))
            .collect();
        if !used_by.is_empty() {
            description.push_str(&format!("; retained container {}", used_by.join(", ")));
        }
        let mut revision = Revision::new(version_of(&id, &tags, repository), description);
        if let Some(created) = image.created {
            revision = revision.created_at(created);
        }
        revisions.push(revision);
    }
    revisions.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.version.id.cmp(&b.version.id)));
    Ok(revisions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_ids_labelled_with_a_tag_of_the_repository() {
        let tags = vec!["other:latest".to_string(), "app:v2".to_string(), "app:stable".to_string()];
        let v = version_of("sha256:abc", &tags, "app");
        assert_eq!(v.id, "sha256:abc");
        assert_eq!(v.label.as_deref(), Some("app:stable"));
        assert_eq!(version_of("sha256:abc", &[], "app").label, None);
    }
}
