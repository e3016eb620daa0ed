//! A manager served over TCP with an authkey, and a second program connecting to it (Python's
//! "Using a remote manager" recipe: `QueueManager(address=('', 50000), authkey=b'abracadabra')`).
//!
//! Run both roles in one go (the server is started as a child process, the client connects):
//!
//! ```text
//! cargo run --example remote_manager
//! ```
//!
//! or in two terminals (on two machines, with the server's address instead of 127.0.0.1):
//!
//! ```text
//! cargo run --example remote_manager -- serve 127.0.0.1:50000
//! cargo run --example remote_manager -- connect 127.0.0.1:50000
//! ```

use multiproc::connection::Address;
use multiproc::manager::{DictProxy, QueueProxy};
use multiproc::Manager;
use std::process::{Command, Stdio};

const AUTHKEY: &[u8] = b"abracadabra";

/// The serving program: create the shared objects, publish them by name, serve until a client
/// asks the server to shut down.
fn serve(address: &str) -> multiproc::Result<()> {
    Manager::builder().address(address.parse::<Address>()?).authkey(AUTHKEY).serve_forever(|bound| {
        // Objects are made through a client connection to ourselves, once the server listens.
        let bound = bound.clone();
        std::thread::spawn(move || -> multiproc::Result<()> {
            let me = Manager::connect(bound.clone(), AUTHKEY)?;
            me.publish("jobs", &me.queue::<String>(0)?)?;
            me.publish("results", &me.dict::<String, usize>()?)?;
            println!("serving on {bound}");
            Ok(())
        });
    })
}

/// The connecting program: look the objects up by name and use them.
fn connect(address: &str) -> multiproc::Result<()> {
    let manager = Manager::connect(address.parse::<Address>()?, AUTHKEY)?;
    let jobs: QueueProxy<String> = manager.lookup("jobs")?;
    let results: DictProxy<String, usize> = manager.lookup("results")?;
    for word in ["remote", "managers", "work"] {
        jobs.put(word.to_string())?;
    }
    while let Ok(word) = jobs.get_nowait() {
        results.insert(word.clone(), word.len())?;
    }
    println!("results: {results}");
    manager.shutdown()
}

fn main() -> multiproc::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(args.get(1).map_or("127.0.0.1:50000", String::as_str)),
        Some("connect") => connect(args.get(1).map_or("127.0.0.1:50000", String::as_str)),
        _ => {
            // Both roles: run this program again as the server, on a port the kernel picks...
            let mut server = Command::new(std::env::current_exe().expect("own path"))
                .args(["serve", "127.0.0.1:0"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start the server");
            let mut line = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(server.stdout.take().expect("piped")),
                &mut line,
            )
            .expect("the server reports its address");
            print!("server: {line}");
            let address = line.trim().rsplit(' ').next().expect("an address").to_string();
            // ... and connect to it like any other program would.
            let used = connect(&address);
            if used.is_err() {
                let _ = server.kill();
            }
            let status = server.wait().expect("the server exits");
            used?;
            println!("server exited: {status}");
            Ok(())
        }
    }
}
