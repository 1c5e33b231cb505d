//! Settings, and their text form: PyTorch's `key:value,key:value`.
//!
//! Keys are named after PyTorch's host-allocator keys where one exists
//! (`pinned_use_background_threads`, `pinned_max_round_threshold_mb`,
//! `pinned_max_cached_size_mb`), plus `pinned_fit`, `pinned_roundup_divisions`,
//! `pinned_release_cached_on_miss` and `pinned_split_blocks`.

use super::size_class::ALLOWED_DIVISIONS;

/// How blocks are sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fit {
    /// Blocks are requests aligned to 512 bytes, and the bytes held stay
    /// within a small budget over the most ever requested at once (budget.rs).
    Exact,
    /// Blocks are rounded as `roundup_divisions` and `max_round_threshold`
    /// say, and cached until `empty_cache` or the cache cap; with their
    /// defaults, PyTorch's allocator's behaviour.
    Rounded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Exact fit (the default) or PyTorch's rounding.
    pub fit: Fit,
    /// With rounded fit, divisions per power of two: 1 (PyTorch's rounding), 2, 4 or 8.
    pub roundup_divisions: u32,
    /// With rounded fit, requests above this many bytes are not rounded to a
    /// size class, only to the 512-byte alignment.
    pub max_round_threshold: usize,
    /// Free cached bytes above this are given back to the backend, oldest first.
    pub max_cached_bytes: usize,
    /// A background thread polls stream events, so allocation never does.
    pub background_reclaimer: bool,
    /// With rounded fit: before a miss asks the backend for a block, cached
    /// blocks go back, oldest first, until as many bytes went back as the new
    /// block takes. (Exact fit gives back what its budget needs anyway.)
    pub release_cached_on_miss: bool,
    /// A miss is served by splitting the smallest larger cached block; freed
    /// parts merge with their free neighbours.
    pub split_blocks: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            fit: Fit::Exact,
            roundup_divisions: 1,
            max_round_threshold: usize::MAX,
            max_cached_bytes: usize::MAX,
            background_reclaimer: false,
            release_cached_on_miss: false,
            split_blocks: false,
        }
    }
}

impl Settings {
    /// Whether a miss gives back the oldest cached blocks first (`pinned_release_cached_on_miss`).
    pub fn releases_oldest_on_miss(&self) -> bool {
        self.release_cached_on_miss && self.fit == Fit::Rounded
    }
}

/// How to treat keys that are not ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownKeys {
    /// Our own variable and the C API: an unknown key is an error.
    Reject,
    /// `PYTORCH_ALLOC_CONF`, shared with PyTorch's device allocator: only `pinned_*`
    /// keys we know are read, the rest is PyTorch's business.
    Ignore,
}

impl Settings {
    /// Applies `key:value,key:value` from `source` (named in errors) on top of these settings.
    pub fn apply(&mut self, text: &str, source: &str, unknown: UnknownKeys) -> Result<(), String> {
        let mut next = *self;
        for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let Some((key, value)) = item.split_once(':') else {
                return Err(format!("{source}: `{item}` is not key:value"));
            };
            let (key, value) = (key.trim(), value.trim());
            let bad = |expected: &str| format!("{source}: {key} must be {expected}, not `{value}`");
            match key {
                "pinned_fit" => {
                    next.fit = match value {
                        "exact" => Fit::Exact,
                        "rounded" => Fit::Rounded,
                        _ => return Err(bad("exact or rounded")),
                    };
                }
                "pinned_roundup_divisions" => {
                    next.roundup_divisions = value
                        .parse()
                        .ok()
                        .filter(|d| ALLOWED_DIVISIONS.contains(d))
                        .ok_or_else(|| bad("1, 2, 4 or 8"))?;
                }
                "pinned_max_round_threshold_mb" => {
                    next.max_round_threshold = mebibytes(value).ok_or_else(|| bad("a whole number of MiB"))?;
                }
                "pinned_max_cached_size_mb" => {
                    next.max_cached_bytes = mebibytes(value).ok_or_else(|| bad("a whole number of MiB"))?;
                }
                "pinned_use_background_threads" => {
                    next.background_reclaimer = boolean(value).ok_or_else(|| bad("True or False"))?;
                }
                "pinned_release_cached_on_miss" => {
                    next.release_cached_on_miss = boolean(value).ok_or_else(|| bad("True or False"))?;
                }
                "pinned_split_blocks" => {
                    next.split_blocks = boolean(value).ok_or_else(|| bad("True or False"))?;
                }
                _ if unknown == UnknownKeys::Ignore => {}
                _ => {
                    return Err(format!(
                        "{source}: unknown key `{key}` (known: pinned_fit, pinned_roundup_divisions, \
                         pinned_max_round_threshold_mb, pinned_max_cached_size_mb, \
                         pinned_use_background_threads, pinned_release_cached_on_miss, pinned_split_blocks)"
                    ))
                }
            }
        }
        *self = next;
        Ok(())
    }
}

/// PyTorch's variable, shared with its device allocator: its `pinned_*` keys are honoured.
const PYTORCH_CONFIG_VARIABLE: &str = "PYTORCH_ALLOC_CONF";
/// Ours: every key must be known.
const CONFIG_VARIABLE: &str = "XPU_CACHING_HOST_ALLOCATOR_CONF";

impl Settings {
    /// The settings a process starts with: PyTorch's variable, then ours, then
    /// `calls` (strings a host passed at run time, named `calls_source` in
    /// errors), each applied over the one before.
    pub fn from_sources(calls: &[String], calls_source: &str) -> Result<Settings, String> {
        Settings::from_sources_in(|variable| std::env::var(variable).ok(), calls, calls_source)
    }

    /// `from_sources` with the environment read through `env`.
    fn from_sources_in(
        env: impl Fn(&str) -> Option<String>,
        calls: &[String],
        calls_source: &str,
    ) -> Result<Settings, String> {
        let mut settings = Settings::default();
        for (variable, unknown) in
            [(PYTORCH_CONFIG_VARIABLE, UnknownKeys::Ignore), (CONFIG_VARIABLE, UnknownKeys::Reject)]
        {
            if let Some(text) = env(variable) {
                settings.apply(&text, variable, unknown)?;
            }
        }
        for text in calls {
            settings.apply(text, calls_source, UnknownKeys::Reject)?;
        }
        Ok(settings)
    }
}

fn mebibytes(value: &str) -> Option<usize> {
    value.parse::<usize>().ok()?.checked_mul(1 << 20)
}

fn boolean(value: &str) -> Option<bool> {
    match value {
        "True" | "true" | "1" => Some(true),
        "False" | "false" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, String> {
        let mut settings = Settings::default();
        settings.apply(text, "TEST", UnknownKeys::Reject).map(|()| settings)
    }

    #[test]
    fn every_key_parses() {
        let s = parse(
            " pinned_fit:rounded,pinned_roundup_divisions:4, pinned_max_round_threshold_mb:64,pinned_max_cached_size_mb:1024,\
             pinned_use_background_threads:True,pinned_release_cached_on_miss:1,pinned_split_blocks:true",
        )
        .unwrap();
        assert_eq!(
            s,
            Settings {
                fit: Fit::Rounded,
                roundup_divisions: 4,
                max_round_threshold: 64 << 20,
                max_cached_bytes: 1 << 30,
                background_reclaimer: true,
                release_cached_on_miss: true,
                split_blocks: true,
            }
        );
        assert_eq!(parse("").unwrap(), Settings::default());
    }

    #[test]
    fn bad_input_is_named_and_changes_nothing() {
        let mut s = Settings::default();
        let error =
            s.apply("pinned_roundup_divisions:2,pinned_roundup_divisions:3", "VAR", UnknownKeys::Reject).unwrap_err();
        assert_eq!(error, "VAR: pinned_roundup_divisions must be 1, 2, 4 or 8, not `3`");
        assert_eq!(s, Settings::default());
        assert!(parse("pinned_bogus:1").unwrap_err().contains("unknown key `pinned_bogus`"));
        assert!(parse("pinned_max_cached_size_mb:-1").unwrap_err().contains("pinned_max_cached_size_mb"));
        assert!(parse("pinned_max_cached_size_mb:99999999999999999").unwrap_err().contains("whole number of MiB"));
        assert!(parse("pinned_use_background_threads:yes").unwrap_err().contains("True or False"));
        assert!(parse("pinned_release_cached_on_miss:maybe").unwrap_err().contains("True or False"));
        assert_eq!(parse("pinned_fit:power2").unwrap_err(), "TEST: pinned_fit must be exact or rounded, not `power2`");
        assert!(parse("nocolon").unwrap_err().contains("not key:value"));
    }

    #[test]
    fn pytorchs_variable_keeps_only_our_keys() {
        let mut s = Settings::default();
        s.apply(
            "expandable_segments:True,pinned_use_cuda_host_register:True,pinned_max_cached_size_mb:8",
            "PYTORCH_ALLOC_CONF",
            UnknownKeys::Ignore,
        )
        .unwrap();
        assert_eq!(s.max_cached_bytes, 8 << 20);
        assert!(s.apply("pinned_roundup_divisions:5", "PYTORCH_ALLOC_CONF", UnknownKeys::Ignore).is_err());
    }

    #[test]
    fn each_source_applies_over_the_one_before() {
        let env = |variable: &str| match variable {
            "PYTORCH_ALLOC_CONF" => Some("expandable_segments:True,pinned_roundup_divisions:2".to_string()),
            "XPU_CACHING_HOST_ALLOCATOR_CONF" => Some("pinned_roundup_divisions:4,pinned_split_blocks:1".to_string()),
            _ => None,
        };
        let calls = ["pinned_roundup_divisions:8".to_string()];
        let s = Settings::from_sources_in(env, &calls, "CALL").unwrap();
        assert_eq!((s.roundup_divisions, s.split_blocks), (8, true));
        let s = Settings::from_sources_in(env, &[], "CALL").unwrap();
        assert_eq!(s.roundup_divisions, 4);
        let error = Settings::from_sources_in(env, &["bogus:1".to_string()], "CALL").unwrap_err();
        assert!(error.starts_with("CALL: unknown key `bogus`"), "{error}");
        let ours_unknown = |variable: &str| (variable == "XPU_CACHING_HOST_ALLOCATOR_CONF").then(|| "x:1".to_string());
        assert!(Settings::from_sources_in(ours_unknown, &[], "CALL")
            .unwrap_err()
            .starts_with("XPU_CACHING_HOST_ALLOCATOR_CONF"));
    }
}
