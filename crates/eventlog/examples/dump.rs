//! Prints each event of a log (a development aid: `cargo run -p eventlog --example dump F`).
fn main() {
    let path = std::env::args().nth(1).expect("usage: dump FILE");
    let log = eventlog::EventLog::parse(&std::fs::read(path).expect("read")).expect("parse");
    for (i, e) in log.events.iter().enumerate() {
        let data: String = e.data.iter().take(48).map(|b| format!("{b:02x}")).collect();
        println!(
            "{i:3} pcr {:2} {} {} {}",
            e.pcr as i32,
            e.event_type,
            e.data.len(),
            data
        );
    }
}
