//! Example 2 of the tutorial: two processes, each given an argument.

use multiproc::Process;

fn cube(n: u64) {
    println!("The Cube is {}", n * n * n);
}

fn square(n: u64) {
    println!("The Square is {}", n * n);
}

pub fn main() -> multiproc::Result<()> {
    let p1 = Process::new(square, (5,));
    let p2 = Process::new(cube, (5,));
    p1.start()?;
    p2.start()?;
    p1.join()?;
    p2.join()?;
    println!("Both processes finished");
    Ok(())
}
