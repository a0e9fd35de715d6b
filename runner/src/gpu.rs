//! GPU discovery through NVML, loaded at run time (`libnvidia-ml.so.1`, or
//! `--nvml-lib`): the cards this runner may hand out, filtered by
//! `CUDA_VISIBLE_DEVICES` / `NVIDIA_VISIBLE_DEVICES`, with their slot
//! counts and free memory; cards with uncorrected ECC errors are kept but
//! marked failed, so they are never allocated.

use std::ffi::OsStr;

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::{EccCounter, MemoryError};
use nvml_wrapper::error::NvmlError;

/// One GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Card {
    /// NVML's UUID (`GPU-…`), what `CUDA_VISIBLE_DEVICES` gets.
    pub uuid: String,
    /// The product name.
    pub name: String,
    /// Slots the card counts for in a request's `gpus` (from its model).
    pub slots: u32,
    /// Free memory at discovery, in bytes.
    pub memory: u64,
    /// Uncorrected ECC errors were reported: never allocated.
    pub ecc_failed: bool,
}

/// What discovery found, and what it has to say about it.
#[derive(Debug, Default)]
pub struct Inventory {
    /// The cards this runner may use.
    pub cards: Vec<Card>,
    /// Lines for the log (no NVML, unknown models, ECC failures, …).
    pub notes: Vec<String>,
}

/// Slots per card model, as the 2022 runner counted them; a model not in
/// the table counts for one slot.
const SLOTS: &[(&str, u32)] = &[
    ("A100", 24),
    ("V100", 16),
    ("P100", 8),
    ("P40", 4),
    ("K80", 2),
    ("TITAN X", 2),
    ("RTX 2080 Ti", 2),
    ("GTX 1080", 2),
    ("GTX 1070", 2),
    ("GTX 1060", 2),
    ("GTX 1050", 2),
];

/// The slot count of a card model and whether the model was known.
#[must_use]
pub fn slots_for(name: &str) -> (u32, bool) {
    SLOTS
        .iter()
        .find(|(model, _)| name.contains(model))
        .map_or((1, false), |&(_, slots)| (slots, true))
}

/// Which devices the environment lets this runner see.
#[derive(Debug, PartialEq, Eq)]
pub enum Visible {
    /// Every device (no variable, or `all`).
    All,
    /// None (`none`, `void`, empty, or `-1`).
    Nothing,
    /// These UUIDs or indexes.
    Listed(Vec<String>),
}

/// `CUDA_VISIBLE_DEVICES`, else `NVIDIA_VISIBLE_DEVICES`.
#[must_use]
pub fn visible(lookup: &dyn Fn(&str) -> Option<String>) -> Visible {
    let Some(value) = lookup("CUDA_VISIBLE_DEVICES").or_else(|| lookup("NVIDIA_VISIBLE_DEVICES"))
    else {
        return Visible::All;
    };
    let value = value.trim();
    match value {
        "all" => Visible::All,
        "" | "none" | "void" | "-1" => Visible::Nothing,
        _ => Visible::Listed(
            value
                .split(',')
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect(),
        ),
    }
}

/// Ask NVML for the cards (`library`: a path to load instead of the
/// system's `libnvidia-ml.so.1`). No NVML means no cards, with one note.
#[must_use]
pub fn discover(library: Option<&OsStr>, lookup: &dyn Fn(&str) -> Option<String>) -> Inventory {
    let visibility = visible(lookup);
    if visibility == Visible::Nothing {
        return Inventory {
            cards: Vec::new(),
            notes: vec![
                "GPUs hidden by CUDA_VISIBLE_DEVICES/NVIDIA_VISIBLE_DEVICES: running CPU-only"
                    .to_owned(),
            ],
        };
    }
    let mut builder = Nvml::builder();
    if let Some(path) = library {
        builder.lib_path(path);
    }
    let nvml = match builder.init() {
        Ok(nvml) => nvml,
        Err(error) => {
            return Inventory {
                cards: Vec::new(),
                notes: vec![format!("no NVML ({}): running CPU-only", nvml_text(&error))],
            };
        }
    };
    match read_cards(&nvml, &visibility) {
        Ok(inventory) => inventory,
        Err(error) => Inventory {
            cards: Vec::new(),
            notes: vec![format!(
                "NVML could not list the GPUs ({}): running CPU-only",
                nvml_text(&error)
            )],
        },
    }
}

fn nvml_text(error: &NvmlError) -> String {
    crate::error_text(error)
}

fn read_cards(nvml: &Nvml, visibility: &Visible) -> Result<Inventory, NvmlError> {
    let mut inventory = Inventory::default();
    let count = nvml.device_count()?;
    for index in 0..count {
        let device = nvml.device_by_index(index)?;
        let uuid = device.uuid()?;
        if let Visible::Listed(wanted) = visibility
            && !wanted
                .iter()
                .any(|item| *item == uuid || *item == index.to_string())
        {
            continue;
        }
        let name = device.name()?;
        let memory = device.memory_info()?.free;
        let ecc_failed =
            match device.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Aggregate) {
                Ok(errors) => errors > 0,
                // Cards without ECC (and NVML builds without the call) are fine.
                Err(NvmlError::NotSupported | NvmlError::FailedToLoadSymbol(_)) => false,
                Err(error) => return Err(error),
            };
        let (slots, known) = slots_for(&name);
        if !known {
            inventory.notes.push(format!(
                "GPU {uuid} ({name}): unknown model, counted as 1 slot"
            ));
        }
        if ecc_failed {
            inventory.notes.push(format!(
                "GPU {uuid} ({name}) reports uncorrected ECC errors: it will not be used"
            ));
        }
        inventory.cards.push(Card {
            uuid,
            name,
            slots,
            memory,
            ecc_failed,
        });
    }
    if let Visible::Listed(wanted) = visibility {
        for item in wanted {
            if !inventory.cards.iter().any(|card| card.uuid == *item)
                && item.parse::<u32>().map_or(true, |index| index >= count)
            {
                inventory
                    .notes
                    .push(format!("visible device {item} is not a GPU NVML knows"));
            }
        }
    }
    Ok(inventory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_map_to_slots() {
        assert_eq!(slots_for("Tesla P40"), (4, true));
        assert_eq!(slots_for("NVIDIA A100-SXM4-40GB"), (24, true));
        assert_eq!(slots_for("GeForce GTX 1060 6GB"), (2, true));
        assert_eq!(slots_for("Mystery Card"), (1, false));
    }

    #[test]
    fn visibility_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| (*value).to_owned())
            }
        };
        assert_eq!(visible(&env(&[])), Visible::All);
        assert_eq!(
            visible(&env(&[("NVIDIA_VISIBLE_DEVICES", "all")])),
            Visible::All
        );
        for hidden in ["none", "void", "", "-1"] {
            let pairs: &'static [(&str, &str)] =
                Box::leak(vec![("NVIDIA_VISIBLE_DEVICES", hidden)].into_boxed_slice());
            assert_eq!(visible(&env(pairs)), Visible::Nothing, "{hidden:?}");
        }
        assert_eq!(
            visible(&env(&[
                ("CUDA_VISIBLE_DEVICES", "GPU-a, 1"),
                ("NVIDIA_VISIBLE_DEVICES", "all")
            ])),
            Visible::Listed(vec!["GPU-a".to_owned(), "1".to_owned()])
        );
    }

    #[test]
    fn no_library_means_cpu_only_with_one_note() {
        let inventory = discover(
            Some(OsStr::new("/nonexistent/libnvidia-ml.so.1")),
            &|_: &str| None,
        );
        assert!(inventory.cards.is_empty());
        assert_eq!(inventory.notes.len(), 1, "{:?}", inventory.notes);
        assert!(
            inventory.notes[0].contains("CPU-only"),
            "{:?}",
            inventory.notes
        );
    }
}
