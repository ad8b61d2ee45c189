fn main() {
    println!("unstuck");
}
