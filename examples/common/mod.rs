//! What the `load` and `soak` examples share: flag parsing and memory
//! figures. (A directory module, so Cargo does not take it for an example.)

/// A clap value parser for a whole number in `min..=max`, with a message
/// that says which rule the value broke.
pub fn count_in(min: u64, max: u64) -> impl Fn(&str) -> Result<u64, String> + Clone + Send + Sync {
    move |text| {
        let value: u64 = text.parse().map_err(|_| "not a whole number".to_owned())?;
        if value < min {
            Err(format!("must be at least {min}"))
        } else if value > max {
            Err(format!("must be at most {max}"))
        } else {
            Ok(value)
        }
    }
}

/// A memory field of `/proc/self/status` in bytes (`"VmRSS:"`, the resident
/// set now; `"VmHWM:"`, its peak); `None` where the kernel does not report
/// it (not Linux).
pub fn memory(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kilobytes: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kilobytes * 1024)
}
