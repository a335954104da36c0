//! A hook that panics. On wasm a panic aborts the instance with an
//! `unreachable` trap; the SDK logs the panic message first, so the host
//! reports `trap` with this message.

use tokenhook_sdk::prelude::*;

pub fn panic_hook(event: &Event) -> Result<Decision, HookError> {
    if event.version > 0 {
        panic!("panic-hook: deliberate panic for containment tests");
    }
    Ok(Decision::new())
}

export_hook!(panic_hook);

#[cfg(test)]
mod tests {
    #[test]
    #[should_panic(expected = "deliberate panic")]
    fn it_panics() {
        let _ = super::panic_hook(&tokenhook_sdk::testing::EventBuilder::new().build());
    }
}
