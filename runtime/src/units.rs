//! Human-friendly durations ("20ms", "1h") and sizes ("4MiB") for the manifest
//! and CLI flags, and their display in reports.

use std::time::Duration;

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration like \"20ms\" or \"1h\": {e}"))
}

pub fn parse_size(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("`{text}` is not a size like \"4MiB\": {e}"))
}

pub fn show_size(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().iec().to_string()
}

/// "1,234,567": fuel counts are easier to compare with separators.
pub fn show_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn show_duration(d: Duration) -> String {
    let micros = d.as_micros();
    if micros < 1_000 {
        format!("{micros} µs")
    } else if micros < 1_000_000 {
        format!("{:.1} ms", micros as f64 / 1_000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_shows() {
        assert_eq!(parse_duration("20ms").unwrap(), Duration::from_millis(20));
        assert_eq!(parse_size("4MiB").unwrap(), 4 << 20);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("lots").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(show_count(41_210), "41,210");
        assert_eq!(show_count(10_000_000), "10,000,000");
        assert_eq!(show_count(7), "7");
        assert_eq!(show_duration(Duration::from_micros(38)), "38 µs");
    }
}
