use temperature::{to_celsius, to_fahrenheit};

#[test]
fn round_trip() {
    let celsius = 37.0;
    assert!((to_celsius(to_fahrenheit(celsius)) - celsius).abs() < 1e-9);
}
