//! Keyboards from /proc/bus/input/devices, to warn when every keyboard is
//! on USB: once sys-usb holds the USB controllers, dom0 has no keyboard of
//! its own (Qubes then needs the USB keyboard proxy, or no sys-usb).

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Keyboard {
    pub name: String,
    /// Linux input bus id: 0x03 USB, 0x11 i8042 (PS/2 and most laptops), 0x18 I2C, 0x05 Bluetooth.
    pub bus: u16,
}

impl Keyboard {
    pub fn is_usb(&self) -> bool {
        self.bus == 0x03
    }
}

/// Devices with the `kbd` handler whose event mask has EV_KEY and EV_REP,
/// which is how real keyboards (not power buttons) look.
pub fn parse(text: &str) -> Vec<Keyboard> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut bus = None;
        let mut name = String::new();
        let mut kbd = false;
        let mut ev = 0u64;
        for line in block.lines() {
            if let Some(rest) = line.strip_prefix("I: ") {
                bus = rest
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix("Bus="))
                    .and_then(|b| u16::from_str_radix(b, 16).ok());
            } else if let Some(rest) = line.strip_prefix("N: Name=") {
                name = rest.trim_matches('"').to_string();
            } else if let Some(rest) = line.strip_prefix("H: Handlers=") {
                kbd = rest.split_whitespace().any(|h| h == "kbd");
            } else if let Some(rest) = line.strip_prefix("B: EV=") {
                ev = u64::from_str_radix(rest.trim(), 16).unwrap_or(0);
            }
        }
        const EV_KEY: u64 = 1 << 1;
        const EV_REP: u64 = 1 << 20;
        if let Some(bus) = bus
            && kbd
            && ev & EV_KEY != 0
            && ev & EV_REP != 0
        {
            out.push(Keyboard { name, bus });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keyboards_not_buttons() {
        let t = "I: Bus=0019 Vendor=0000 Product=0001 Version=0000\nN: Name=\"Power Button\"\nH: Handlers=kbd event0 \nB: EV=3\n\nI: Bus=0011 Vendor=0001 Product=0001 Version=ab41\nN: Name=\"AT Translated Set 2 keyboard\"\nH: Handlers=sysrq kbd event1 leds \nB: EV=120013\n\nI: Bus=0003 Vendor=046d Product=c31c Version=0110\nN: Name=\"Logitech USB Keyboard\"\nH: Handlers=sysrq kbd leds event2 \nB: EV=120013\n";
        let k = parse(t);
        assert_eq!(k.len(), 2);
        assert!(!k[0].is_usb());
        assert!(k[1].is_usb());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "(I: Bus=[0-9a-f]{0,5} |N: Name=\"[a-z]*\"|H: Handlers=[a-z ]*|B: EV=[0-9a-fx]{0,18}|\\PC{0,20}|\n){0,30}") {
            let _ = parse(&s);
        }
    }
}
