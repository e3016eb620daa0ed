//! Example 3 of the tutorial: how many CPUs the system has.

pub fn main() {
    println!("The number of CPU currently working in system :  {}", multiproc::cpu_count());
}
