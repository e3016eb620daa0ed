//! Example 9 of the tutorial: a list kept in a manager's server process, used through a proxy.
//!
//! Python:
//! ```python
//! manager = Manager(); l = manager.list([i*i for i in range(10)])
//! print(l); print(repr(l)); print(l[4]); print(l[2:5])
//! ```

use multiproc::manager::ListProxy;
use multiproc::{Manager, Process};

/// Runs in a child process: the proxy arrived as an argument and reconnects to the server.
fn add_cube(l: ListProxy<u64>, n: u64) -> multiproc::Result<()> {
    l.append(n * n * n)
}

pub fn main() -> multiproc::Result<()> {
    let manager = Manager::start()?;
    let l = manager.list((0..10u64).map(|i| i * i))?;
    println!("{l}"); // [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]
    println!("{l:?}"); // <ListProxy object, typeid 'list' at 0x...>
    println!("{}", l.get(4)?); // 16
    println!("{:?}", l.slice(2..5)?); // [4, 9, 16]

    // Proxy objects can be passed to other processes and used there.
    Process::new(add_cube, (l.clone(), 3)).start()?.join()?;
    println!("{:?}", l.get(10)?); // 27
    Ok(())
}
