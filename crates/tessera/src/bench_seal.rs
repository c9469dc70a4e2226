//! `tessera bench seal`: the cost of sealing on one core, without a cluster: seals a buffer of
//! random bytes with the segment framing (one layer, as SSE-S3/SSE-KMS/SSE-C, and two, as
//! DSSE), opens it again, checks it byte for byte, and prints MiB/s both ways. The figure every
//! PUT and GET with encryption pays per core, to set against the cluster benchmarks.

use std::time::Instant;

use anyhow::{Result, ensure};
use clap::Args;
use rand::RngCore;
use tessera_core::sealing::aead::{Aes256GcmAead, KEY_LEN, SealKey, SegmentAead};
use tessera_core::sealing::segments::{
    Binding, DEFAULT_SEGMENT_SIZE, SegmentGeometry, SegmentOpener, SegmentSealer,
};

/// Flags of `tessera bench seal`.
#[derive(Debug, Args)]
pub struct SealArgs {
    /// MiB of plaintext per run.
    #[arg(long, default_value_t = 256)]
    mib: usize,
    /// Plaintext bytes per segment.
    #[arg(long, default_value_t = DEFAULT_SEGMENT_SIZE)]
    segment_size: u32,
    /// Bytes handed to the sealer and opener at a time (as a request body arrives).
    #[arg(long, default_value_t = 256 * 1024)]
    piece: usize,
}

const BINDING: Binding<'static> = Binding {
    bucket: "bench",
    key: "object",
    part_number: 0,
};

/// One cipher per key, inner layer first (called twice with the same keys for a sealer and
/// its opener).
fn ciphers(keys: &[[u8; KEY_LEN]]) -> Vec<Box<dyn SegmentAead>> {
    keys.iter()
        .map(|k| Box::new(Aes256GcmAead::new(&SealKey::from_bytes(*k))) as Box<dyn SegmentAead>)
        .collect()
}

/// One measurement: MiB/s sealing and opening `plain` with `layers` layers.
struct Figures {
    seal_mib_s: f64,
    open_mib_s: f64,
}

fn measure(args: &SealArgs, plain: &[u8], layers: u8) -> Result<Figures> {
    let geometry = SegmentGeometry::new(args.segment_size, layers)?;
    let keys: Vec<[u8; KEY_LEN]> = (0..layers)
        .map(|_| {
            let mut key = [0u8; KEY_LEN];
            rand::rng().fill_bytes(&mut key);
            key
        })
        .collect();
    let piece = args.piece.max(1);
    let len = plain.len() as u64;

    // Untimed: the whole stored form, and proof that it opens to exactly the plaintext.
    let mut stored = Vec::with_capacity(geometry.stored_len(len) as usize);
    let mut sealer = SegmentSealer::new(geometry, &BINDING, ciphers(&keys))?;
    sealer.push(plain, &mut stored);
    sealer.finish(&mut stored);
    let mut opened = Vec::with_capacity(plain.len());
    let mut opener = SegmentOpener::new(geometry, &BINDING, ciphers(&keys), 0..len, len)?;
    opener.push(&stored, &mut opened)?;
    opener.finish()?;
    ensure!(opened == plain, "opened bytes differ from the plaintext");

    // Timed: streamed piece by piece into one reused buffer, as a request passes its pieces
    // on, so the figures are the framing's and not first-touch page faults of a large buffer.
    let mut out = Vec::with_capacity(2 * piece + 2 * args.segment_size as usize);
    let started = Instant::now();
    let mut sealer = SegmentSealer::new(geometry, &BINDING, ciphers(&keys))?;
    let mut sealed_bytes = 0;
    for p in plain.chunks(piece) {
        sealer.push(p, &mut out);
        sealed_bytes += out.len();
        out.clear();
    }
    sealer.finish(&mut out);
    sealed_bytes += out.len();
    let seal_secs = started.elapsed().as_secs_f64();
    ensure!(
        sealed_bytes == stored.len(),
        "streamed sealing differs in length"
    );

    let started = Instant::now();
    let mut opener = SegmentOpener::new(geometry, &BINDING, ciphers(&keys), 0..len, len)?;
    let mut opened_bytes = 0;
    for p in stored.chunks(piece) {
        out.clear();
        opener.push(p, &mut out)?;
        opened_bytes += out.len();
    }
    opener.finish()?;
    let open_secs = started.elapsed().as_secs_f64();
    ensure!(
        opened_bytes == plain.len(),
        "streamed opening differs in length"
    );
    let mib = plain.len() as f64 / (1024.0 * 1024.0);
    Ok(Figures {
        seal_mib_s: mib / seal_secs,
        open_mib_s: mib / open_secs,
    })
}

/// Runs the measurement and prints one line per layer count.
pub fn run(args: SealArgs) -> Result<()> {
    let mut plain = vec![0u8; args.mib.max(1) * 1024 * 1024];
    rand::rng().fill_bytes(&mut plain);
    println!(
        "sealing {} MiB in {} KiB segments, {} KiB pieces, one core, aes-256-gcm",
        args.mib.max(1),
        args.segment_size / 1024,
        args.piece / 1024
    );
    for (layers, what) in [(1u8, "SSE-S3/KMS/C (1 layer)"), (2, "DSSE (2 layers)")] {
        let f = measure(&args, &plain, layers)?;
        println!(
            "{what:<24} seal {:>8.1} MiB/s   open {:>8.1} MiB/s",
            f.seal_mib_s, f.open_mib_s
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layer_counts_round_trip_in_uneven_pieces() {
        let args = SealArgs {
            mib: 1,
            segment_size: 1000,
            piece: 777,
        };
        let plain: Vec<u8> = (0..300_001u32).map(|i| (i % 253) as u8).collect();
        for layers in [1, 2] {
            let f = measure(&args, &plain, layers).expect("seals, opens and matches");
            assert!(f.seal_mib_s > 0.0 && f.open_mib_s > 0.0);
        }
        assert_eq!(
            measure(&args, &plain, 3).err().map(|e| e.to_string()),
            Some("invalid segment geometry: segment size 1000, 3 layers".to_owned())
        );
    }
}
