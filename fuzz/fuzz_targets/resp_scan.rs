//! Fuzzes the data plane's RESP scanner (`redis_loadgen::proto::resp::scan`) with arbitrary bytes.
//!
//! Invariants checked:
//! - `scan` never panics (any panic is a crash libFuzzer reports);
//! - on `Ok(Some((reply, used)))`: `0 < used <= buf.len()` and the payload range lies within
//!   `0..used`;
//! - a complete reply is self-contained: scanning `&buf[..used]` gives the same result;
//! - a strict prefix of a complete reply reads as "need more bytes": scanning `&buf[..cut]` for a
//!   few `cut < used` returns `Ok(None)` (never `Some`, or the client would act on half a reply;
//!   never an error, or a short read would drop a healthy connection).
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis_loadgen::proto::resp::scan;

fuzz_target!(|buf: &[u8]| {
    let result = scan(buf);
    let Ok(Some((reply, used))) = &result else {
        return;
    };
    let used = *used;
    assert!(used > 0, "consumed nothing: {result:?}");
    assert!(used <= buf.len(), "consumed {used} of {} bytes", buf.len());
    assert!(
        reply.payload.start <= reply.payload.end && reply.payload.end <= used,
        "payload {:?} outside 0..{used}",
        reply.payload
    );

    let whole = &buf[..used];
    assert_eq!(scan(whole), result, "reply is not self-contained");

    // A handful of strict prefixes: the edges (empty, one byte, one short of the end) plus a
    // spread in between, so each input stays cheap to check.
    let mut cuts = [
        0,
        1,
        used / 4,
        used / 2,
        used * 3 / 4,
        used.saturating_sub(2),
        used - 1,
    ];
    cuts.sort_unstable();
    let mut last = usize::MAX;
    for cut in cuts {
        if cut >= used || cut == last {
            continue;
        }
        last = cut;
        // Stricter than "not Some": a valid reply cut short must not read as malformed either,
        // or a short read would drop a healthy connection.
        let prefix = scan(&whole[..cut]);
        assert_eq!(
            prefix,
            Ok(None),
            "strict prefix of {cut}/{used} bytes is not 'incomplete'"
        );
    }
});
