//! The flag groups several commands share (`cli/shared.rs`) resolved into
//! what the library takes, once, so that `sgr push` and `sgr release
//! --images` select registries, and every planning command selects images,
//! the same way.

use std::collections::BTreeMap;

use thiserror::Error;

use crate::build::prepare::PlanSelection;
use crate::cli::shared::{GitArgs, PlanArgs, RegistryArgs};
use crate::env;
use crate::registry::azure;
use crate::registry::provider::Kind;
use crate::registry::transfer::RegistrySelection;

/// The registry flags select nothing usable.
#[derive(Debug, Error)]
pub enum RegistryChoiceError {
    /// No registry was selected.
    #[error("no registry to push to")]
    NoRegistry,
    /// `--azure` without a registry name.
    #[error(
        "--azure needs the registry: --azure-registry NAME or {}",
        env::AZURE_REGISTRY_NAME
    )]
    NoAzureRegistry,
}

/// The registries `targets` select; `lookup` is the environment (the ECR
/// host override).
///
/// Without `--azure`, `--aws` or `--registry`, ACR is chosen when a registry
/// name is set and ECR always, neither explicitly (a registry without
/// credentials is then skipped, not an error).
///
/// # Errors
/// `--azure` without a name, or nothing selected.
pub fn registry_selections(
    targets: &RegistryArgs,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<RegistrySelection>, RegistryChoiceError> {
    let explicit = targets.azure || targets.aws || !targets.registries.is_empty();
    let azure_name = targets
        .azure_registry
        .clone()
        .filter(|name| !name.trim().is_empty());
    let mut selected = Vec::new();
    if targets.azure || (!explicit && azure_name.is_some()) {
        let name = azure_name.ok_or(RegistryChoiceError::NoAzureRegistry)?;
        selected.push(RegistrySelection {
            kind: Kind::Azure,
            host: Some(azure::registry_host(name.trim())),
            explicit,
        });
    }
    if targets.aws || !explicit {
        selected.push(RegistrySelection {
            kind: Kind::Aws,
            host: lookup(env::ECR_REGISTRY_OVERRIDE).filter(|host| !host.is_empty()),
            explicit,
        });
    }
    for host in &targets.registries {
        let host = host.trim().trim_end_matches('/');
        if host.is_empty() {
            continue;
        }
        let host = host
            .strip_prefix("https://")
            .or_else(|| host.strip_prefix("http://"))
            .unwrap_or(host);
        if !selected
            .iter()
            .any(|existing| existing.host.as_deref() == Some(host))
        {
            selected.push(RegistrySelection {
                kind: Kind::Registry,
                host: Some(host.to_owned()),
                explicit: true,
            });
        }
    }
    if selected.is_empty() {
        return Err(RegistryChoiceError::NoRegistry);
    }
    Ok(selected)
}

/// The plan selection the git and plan flags make, for `images` (all when empty).
#[must_use]
pub fn plan_selection<'a>(
    git: &'a GitArgs,
    plan: &'a PlanArgs,
    images: &'a [String],
    extra_args: BTreeMap<String, String>,
) -> PlanSelection<'a> {
    PlanSelection {
        git_dir: &git.git_dir,
        config: plan.config.as_deref(),
        org: plan.org.as_deref(),
        images,
        extra_args,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn without_flags_ecr_is_implied_with_the_override_host_from_the_lookup()
    -> Result<(), RegistryChoiceError> {
        let lookup =
            |name: &str| (name == env::ECR_REGISTRY_OVERRIDE).then(|| "moto:5000".to_owned());
        let chosen = registry_selections(&RegistryArgs::default(), &lookup)?;
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].kind, Kind::Aws);
        assert_eq!(chosen[0].host.as_deref(), Some("moto:5000"));
        assert!(!chosen[0].explicit);
        Ok(())
    }

    #[test]
    fn an_azure_name_alone_adds_acr_but_not_explicitly() -> Result<(), RegistryChoiceError> {
        let targets = RegistryArgs {
            azure_registry: Some("leafai".to_owned()),
            ..RegistryArgs::default()
        };
        let chosen = registry_selections(&targets, &nothing)?;
        let kinds: Vec<_> = chosen
            .iter()
            .map(|selection| (selection.kind, selection.host.clone(), selection.explicit))
            .collect();
        assert_eq!(
            kinds,
            [
                (Kind::Azure, Some("leafai.azurecr.io".to_owned()), false),
                (Kind::Aws, None, false)
            ]
        );
        Ok(())
    }

    #[test]
    fn a_blank_registry_list_with_no_cloud_flag_is_no_registry() {
        let targets = RegistryArgs {
            registries: vec![" ".to_owned()],
            ..RegistryArgs::default()
        };
        assert!(matches!(
            registry_selections(&targets, &nothing),
            Err(RegistryChoiceError::NoRegistry)
        ));
    }
}
