//! What the runner may hand out (cores, memory, disk, GPUs) and what running
//! experiments hold. A request either fits now (an [`Allocation`] that gives
//! its share back when dropped), fits later (when running experiments
//! finish), or never fits on this runner; the answer says why.
//!
//! This is bookkeeping, as in the original runner: nothing is enforced with
//! cgroups. GPUs are handed out as whole cards; a request's `gpus` counts
//! slots, and a card covers as many slots as its model is worth
//! ([`crate::gpu::slots_for`]).

use std::fs;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use crate::gpu::Card;
use crate::request::{Request, parse_size};

/// Beyond this many usable cards the allocator takes cards greedily
/// instead of trying every combination.
const EXHAUSTIVE_CARDS: usize = 16;

/// The runner's capacity.
#[derive(Clone, Debug)]
pub struct Limits {
    /// CPU cores.
    pub cores: u32,
    /// Memory, bytes.
    pub memory: u64,
    /// Disk under the work directory, bytes.
    pub disk: u64,
    /// The GPUs.
    pub cards: Vec<Card>,
}

/// Whether a request fits.
#[derive(Debug)]
pub enum Fit {
    /// It does: the resources are held until the allocation is dropped.
    Now(Allocation),
    /// Not while the running experiments hold what they hold.
    Later(String),
    /// Never on this runner, even idle.
    Never(String),
}

#[derive(Debug, Default)]
struct Held {
    cores: u32,
    memory: u64,
    disk: u64,
    cards: Vec<bool>,
    experiments: usize,
}

#[derive(Debug)]
struct Inner {
    limits: Limits,
    held: Mutex<Held>,
}

/// The runner's resources, shared by the experiments.
#[derive(Clone, Debug)]
pub struct Resources {
    inner: Arc<Inner>,
}

/// What one experiment holds; given back on drop.
#[derive(Debug)]
pub struct Allocation {
    inner: Arc<Inner>,
    cores: u32,
    memory: u64,
    disk: u64,
    cards: Vec<usize>,
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Demand {
    /// Cores (at least 1).
    pub cores: u32,
    /// Memory, bytes.
    pub memory: u64,
    /// Disk, bytes.
    pub disk: u64,
    /// GPU slots.
    pub slots: u32,
    /// GPU memory per card, bytes.
    pub gpu_memory: u64,
}

impl Demand {
    /// What `request` asks for.
    #[must_use]
    pub fn of(request: &Request) -> Self {
        Self::needed(&request.experiment.resources_needed)
    }

    /// What a `resources_needed` object asks for (also the clear-text
    /// header of an encrypted request).
    #[must_use]
    pub fn needed(needed: &crate::request::Resources) -> Self {
        Self {
            cores: needed.cpus.max(1),
            memory: parse_size(&needed.ram).unwrap_or(0),
            disk: parse_size(&needed.hdd).unwrap_or(0),
            slots: needed.gpus,
            gpu_memory: parse_size(&needed.gpu_mem).unwrap_or(0),
        }
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `8 GiB`.
#[must_use]
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let mut shown = bytes as f64;
    let mut unit = 0;
    while shown >= 1024.0 && unit + 1 < UNITS.len() {
        shown /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        return format!("{bytes} B");
    }
    let text = format!("{shown:.1}");
    format!(
        "{} {}",
        text.strip_suffix(".0").unwrap_or(&text),
        UNITS[unit]
    )
}

impl Resources {
    /// Resources with these limits, nothing held.
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        let cards = vec![false; limits.cards.len()];
        Self {
            inner: Arc::new(Inner {
                limits,
                held: Mutex::new(Held {
                    cards,
                    ..Held::default()
                }),
            }),
        }
    }

    /// The limits.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// How many experiments hold resources now.
    #[must_use]
    pub fn running(&self) -> usize {
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .experiments
    }

    /// Why `demand` can never fit on this runner, even idle; `None` when
    /// it can (now or later). Holds nothing.
    #[must_use]
    pub fn never(&self, demand: Demand) -> Option<String> {
        never(&self.inner.limits, demand)
    }

    /// Take what `demand` needs if it is free.
    #[must_use]
    pub fn allocate(&self, demand: Demand) -> Fit {
        let limits = &self.inner.limits;
        if let Some(reason) = never(limits, demand) {
            return Fit::Never(reason);
        }
        let mut held = self
            .inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut short = Vec::new();
        if held.cores + demand.cores > limits.cores {
            short.push(format!(
                "{} of {} cores free",
                limits.cores - held.cores,
                limits.cores
            ));
        }
        if held.memory + demand.memory > limits.memory {
            short.push(format!(
                "{} of {} memory free",
                human(limits.memory - held.memory),
                human(limits.memory)
            ));
        }
        if held.disk + demand.disk > limits.disk {
            short.push(format!(
                "{} of {} disk free",
                human(limits.disk - held.disk),
                human(limits.disk)
            ));
        }
        let cards = choose_cards(&limits.cards, &held.cards, demand);
        if cards.is_none() {
            let free = limits
                .cards
                .iter()
                .zip(&held.cards)
                .filter(|(card, taken)| !**taken && !card.ecc_failed)
                .count();
            short.push(format!("{free} usable GPU(s) free"));
        }
        let Some(cards) = cards.filter(|_| short.is_empty()) else {
            return Fit::Later(format!("needs {}; {}", describe(demand), short.join(", ")));
        };
        held.cores += demand.cores;
        held.memory += demand.memory;
        held.disk += demand.disk;
        for &index in &cards {
            held.cards[index] = true;
        }
        held.experiments += 1;
        drop(held);
        Fit::Now(Allocation {
            inner: Arc::clone(&self.inner),
            cores: demand.cores,
            memory: demand.memory,
            disk: demand.disk,
            cards,
        })
    }
}

impl Allocation {
    /// The UUIDs of the cards given, for `CUDA_VISIBLE_DEVICES`.
    #[must_use]
    pub fn gpus(&self) -> Vec<String> {
        self.cards
            .iter()
            .map(|&index| self.inner.limits.cards[index].uuid.clone())
            .collect()
    }

    /// The cores given.
    #[must_use]
    pub const fn cores(&self) -> u32 {
        self.cores
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        let mut held = self
            .inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.cores -= self.cores;
        held.memory -= self.memory;
        held.disk -= self.disk;
        for &index in &self.cards {
            held.cards[index] = false;
        }
        held.experiments -= 1;
    }
}

fn describe(demand: Demand) -> String {
    let mut text = format!(
        "{} core(s), {} memory, {} disk",
        demand.cores,
        human(demand.memory),
        human(demand.disk)
    );
    if demand.slots > 0 {
        use std::fmt::Write as _;
        let _ = write!(text, ", {} GPU slot(s)", demand.slots);
        if demand.gpu_memory > 0 {
            let _ = write!(text, " with {} each", human(demand.gpu_memory));
        }
    }
    text
}

/// Why `demand` cannot fit even on an idle runner.
fn never(limits: &Limits, demand: Demand) -> Option<String> {
    let mut reasons = Vec::new();
    if demand.cores > limits.cores {
        reasons.push(format!(
            "{} cores asked, this runner has {} (--max-cores)",
            demand.cores, limits.cores
        ));
    }
    if demand.memory > limits.memory {
        reasons.push(format!(
            "{} memory asked, this runner offers {} (--max-mem)",
            human(demand.memory),
            human(limits.memory)
        ));
    }
    if demand.disk > limits.disk {
        reasons.push(format!(
            "{} disk asked, this runner offers {} (--max-disk)",
            human(demand.disk),
            human(limits.disk)
        ));
    }
    if demand.slots > 0
        && choose_cards(&limits.cards, &vec![false; limits.cards.len()], demand).is_none()
    {
        let usable: Vec<&Card> = limits
            .cards
            .iter()
            .filter(|card| !card.ecc_failed)
            .collect();
        reasons.push(if limits.cards.is_empty() {
            format!("{} GPU slot(s) asked, this runner has no GPU", demand.slots)
        } else {
            format!(
                "{} GPU slot(s){} asked, this runner's {} usable card(s) cannot give that",
                demand.slots,
                if demand.gpu_memory > 0 {
                    format!(" with {} each", human(demand.gpu_memory))
                } else {
                    String::new()
                },
                usable.len()
            )
        });
    }
    (!reasons.is_empty()).then(|| reasons.join("; "))
}

/// Whole cards covering `demand.slots` with the least waste, then the
/// fewest cards, then the lowest UUIDs; `None` when the free, healthy cards
/// with enough memory cannot. No slots asked: no card.
fn choose_cards(cards: &[Card], taken: &[bool], demand: Demand) -> Option<Vec<usize>> {
    if demand.slots == 0 {
        return Some(Vec::new());
    }
    let mut usable: Vec<usize> = (0..cards.len())
        .filter(|&index| {
            !taken[index] && !cards[index].ecc_failed && cards[index].memory >= demand.gpu_memory
        })
        .collect();
    usable.sort_by(|&a, &b| {
        cards[a]
            .slots
            .cmp(&cards[b].slots)
            .then_with(|| cards[a].uuid.cmp(&cards[b].uuid))
    });
    let total: u64 = usable
        .iter()
        .map(|&index| u64::from(cards[index].slots))
        .sum();
    if total < u64::from(demand.slots) {
        return None;
    }
    if usable.len() > EXHAUSTIVE_CARDS {
        // Largest first until covered.
        let mut chosen = Vec::new();
        let mut covered = 0;
        for &index in usable.iter().rev() {
            chosen.push(index);
            covered += cards[index].slots;
            if covered >= demand.slots {
                break;
            }
        }
        chosen.sort_unstable();
        return Some(chosen);
    }
    let mut best: Option<(u32, usize, Vec<usize>)> = None;
    for mask in 1_u32..(1 << usable.len()) {
        let chosen: Vec<usize> = (0..usable.len())
            .filter(|bit| mask & (1 << bit) != 0)
            .map(|bit| usable[bit])
            .collect();
        let covered: u32 = chosen.iter().map(|&index| cards[index].slots).sum();
        if covered < demand.slots {
            continue;
        }
        let waste = covered - demand.slots;
        let better = best.as_ref().is_none_or(|(best_waste, best_count, _)| {
            (waste, chosen.len()) < (*best_waste, *best_count)
        });
        if better {
            best = Some((waste, chosen.len(), chosen));
        }
    }
    best.map(|(_, _, mut chosen)| {
        chosen.sort_unstable();
        chosen
    })
}

/// What this machine (or container) has: cores this process may use,
/// memory available now (capped by the cgroup's `memory.max`), and the
/// space free for unprivileged users on `work_dir`'s file system.
///
/// # Errors
/// `work_dir` cannot be examined.
pub fn measure(work_dir: &Path) -> io::Result<(u32, u64, u64)> {
    let cores = std::thread::available_parallelism()
        .map_or(1, |count| u32::try_from(count.get()).unwrap_or(u32::MAX));
    let available = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemAvailable:"))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .and_then(|kib| kib.trim().parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kib| kib * 1024);
    let cgroup = fs::read_to_string("/sys/fs/cgroup/memory.max")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    let memory = available.min(cgroup);
    let stat = rustix::fs::statvfs(work_dir)?;
    let disk = stat.f_bavail.saturating_mul(stat.f_frsize);
    Ok((cores, memory, disk))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn card(uuid: &str, slots: u32, memory: u64, ecc_failed: bool) -> Card {
        Card {
            uuid: uuid.to_owned(),
            name: "test".to_owned(),
            slots,
            memory,
            ecc_failed,
        }
    }

    fn limits(cards: Vec<Card>) -> Limits {
        Limits {
            cores: 4,
            memory: 8 * GIB,
            disk: 100 * GIB,
            cards,
        }
    }

    fn demand(slots: u32) -> Demand {
        Demand {
            cores: 1,
            memory: GIB,
            disk: GIB,
            slots,
            gpu_memory: 0,
        }
    }

    #[test]
    fn cpu_memory_and_disk_are_counted_and_given_back() {
        let resources = Resources::new(limits(Vec::new()));
        let half = Demand {
            cores: 2,
            memory: 4 * GIB,
            disk: 10 * GIB,
            ..Demand::default()
        };
        let Fit::Now(first) = resources.allocate(half) else {
            panic!("first half should fit");
        };
        let Fit::Now(second) = resources.allocate(half) else {
            panic!("second half should fit");
        };
        assert_eq!(resources.running(), 2);
        match resources.allocate(demand(0)) {
            Fit::Later(reason) => {
                assert!(reason.contains("0 of 4 cores free"), "{reason}");
                assert!(reason.contains("0 B of 8 GiB memory free"), "{reason}");
            }
            other => panic!("expected Later, got {other:?}"),
        }
        drop(first);
        assert!(matches!(resources.allocate(demand(0)), Fit::Now(_)));
        drop(second);
        assert_eq!(resources.running(), 0);
    }

    #[test]
    fn what_can_never_fit_says_why() {
        let resources = Resources::new(limits(vec![card("GPU-a", 2, 8 * GIB, false)]));
        let big = Demand {
            cores: 1,
            memory: 16 * GIB,
            disk: 0,
            slots: 4,
            gpu_memory: 0,
        };
        match resources.allocate(big) {
            Fit::Never(reason) => {
                assert!(
                    reason.contains("16 GiB memory asked, this runner offers 8 GiB (--max-mem)"),
                    "{reason}"
                );
                assert!(reason.contains("4 GPU slot(s) asked"), "{reason}");
            }
            other => panic!("expected Never, got {other:?}"),
        }
        let no_gpu = Resources::new(limits(Vec::new()));
        match no_gpu.allocate(demand(1)) {
            Fit::Never(reason) => assert!(reason.contains("this runner has no GPU"), "{reason}"),
            other => panic!("expected Never, got {other:?}"),
        }
    }

    #[test]
    fn whole_cards_least_waste_then_fewest() {
        // Two 2-slot cards: 2 slots take one card (reference scenario A4).
        let two = vec![card("GPU-a", 2, GIB, false), card("GPU-b", 2, GIB, false)];
        let taken = vec![false; 2];
        assert_eq!(choose_cards(&two, &taken, demand(2)), Some(vec![0]));
        assert_eq!(choose_cards(&two, &taken, demand(3)), Some(vec![0, 1]));
        assert_eq!(choose_cards(&two, &taken, demand(5)), None);
        // Least waste: 4 slots from {1, 4, 8} is the 4-slot card.
        let mixed = vec![
            card("GPU-p100", 8, GIB, false),
            card("GPU-k", 1, GIB, false),
            card("GPU-p40", 4, GIB, false),
        ];
        assert_eq!(choose_cards(&mixed, &[false; 3], demand(4)), Some(vec![2]));
        // 5 slots: 4 + 1 wastes nothing.
        assert_eq!(
            choose_cards(&mixed, &[false; 3], demand(5)),
            Some(vec![1, 2])
        );
        // A taken card is skipped.
        assert_eq!(
            choose_cards(&mixed, &[false, false, true], demand(4)),
            Some(vec![0])
        );
        // Equal waste: fewer cards win (2 slots: the 2-slot card, not 1 + 1).
        let small = vec![
            card("GPU-1", 1, GIB, false),
            card("GPU-2", 1, GIB, false),
            card("GPU-3", 2, GIB, false),
        ];
        assert_eq!(choose_cards(&small, &[false; 3], demand(2)), Some(vec![2]));
    }

    #[test]
    fn ecc_failures_and_small_memory_exclude_a_card() {
        let cards = vec![
            card("GPU-bad", 2, 16 * GIB, true),
            card("GPU-good", 2, 16 * GIB, false),
            card("GPU-small", 2, GIB, false),
        ];
        let resources = Resources::new(limits(cards));
        let Fit::Now(first) = resources.allocate(Demand {
            gpu_memory: 8 * GIB,
            ..demand(2)
        }) else {
            panic!("one healthy card with the memory");
        };
        assert_eq!(first.gpus(), vec!["GPU-good".to_owned()]);
        let Fit::Now(second) = resources.allocate(demand(2)) else {
            panic!("the small card remains");
        };
        assert_eq!(second.gpus(), vec!["GPU-small".to_owned()]);
        assert!(matches!(resources.allocate(demand(2)), Fit::Later(_)));
        drop(first);
        drop(second);
        // The ECC card is never used, even when everything else is free.
        match resources.allocate(demand(6)) {
            Fit::Never(reason) => assert!(reason.contains("2 usable card(s)"), "{reason}"),
            other => panic!("expected Never, got {other:?}"),
        }
    }

    #[test]
    fn many_cards_are_taken_greedily() {
        let cards: Vec<Card> = (0..20)
            .map(|index| card(&format!("GPU-{index:02}"), 2, GIB, false))
            .collect();
        let chosen = choose_cards(&cards, &[false; 20], demand(6)).unwrap_or_default();
        assert_eq!(chosen.len(), 3);
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(8 * GIB), "8 GiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 * GIB / 2), "1.5 GiB");
    }
}
