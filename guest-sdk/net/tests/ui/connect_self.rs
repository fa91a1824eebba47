struct Counter(u32);

impl Counter {
    #[net::connect]
    fn bump(&mut self) -> u32 {
        self.0 += 1;
        self.0
    }
}

fn main() {
    let _ = Counter(0).bump();
}
