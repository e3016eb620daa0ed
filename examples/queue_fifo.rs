//! Example 4 of the tutorial: a queue hands items back in the order they were put.

use multiproc::Queue;

pub fn main() -> multiproc::Result<()> {
    let fruits = ["Apple", "Orange", "Guava", "Papaya", "Banana"];
    let queue: Queue<String> = Queue::new()?;
    println!("pushing items to the queue:");
    for (count, fruit) in fruits.iter().enumerate() {
        println!("item no:  {}   {}", count + 1, fruit);
        queue.put(fruit.to_string())?;
    }
    println!("\npopping items from the queue:");
    let mut count = 0;
    while !queue.empty() {
        let item = queue.get()?;
        println!("item no:  {count}   {item}");
        count += 1;
    }
    Ok(())
}
