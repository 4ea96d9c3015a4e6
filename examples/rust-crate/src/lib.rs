//! Temperature conversions: a small crate to try `forge validate` on.

/// Degrees Celsius to degrees Fahrenheit.
///
/// ```
/// assert_eq!(temperature::to_fahrenheit(100.0), 212.0);
/// ```
pub fn to_fahrenheit(celsius: f64) -> f64 {
    celsius * 9.0 / 5.0 + 32.0
}

/// Degrees Fahrenheit to degrees Celsius.
pub fn to_celsius(fahrenheit: f64) -> f64 {
    (fahrenheit - 32.0) * 5.0 / 9.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freezing_point() {
        assert_eq!(to_fahrenheit(0.0), 32.0);
    }
}
