//! What the store, scrubber and service tests share: deterministic shards written through the
//! real store, and the tools that damage or forge files on disk the way a failing disk or a
//! confused operator would.

use crate::shard_key::ShardKey;
use crate::shard_writer::WrittenShard;
use crate::store::ShardStore;
use bytes::Bytes;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use tessera_core::blob::Generation;
use tessera_core::names::DataId;
use tessera_core::shard_file::{
    FOOTER_LEN, HASH_LEN, ShardDigest, ShardFileFooter, ShardFileHeader, chunk_hash,
    hash_table_offset, shard_digest,
};

/// Chunk size of the test shards.
pub(crate) const CHUNK: u32 = 1024;

/// The lease id every test header carries.
pub(crate) const LEASE: u64 = 77;

/// The header of generation `generation` of shard `shard_index` of blob `[id; 16]` (RS 4+2).
pub(crate) fn header_gen(id: u8, shard_index: u32, generation: u64) -> ShardFileHeader {
    ShardFileHeader {
        data_id: DataId::from_bytes([id; 16]),
        shard_index,
        data_shards: 4,
        parity_shards: 2,
        chunk_size: CHUNK,
        generation,
        lease_id: LEASE,
    }
}

/// The header of the default generation (`0x1000 + id`) of a test shard.
pub(crate) fn header(id: u8, shard_index: u32) -> ShardFileHeader {
    header_gen(id, shard_index, 0x1000 + u64::from(id))
}

/// The copy a header names.
pub(crate) fn key_of(header: &ShardFileHeader) -> ShardKey {
    ShardKey::of_header(header).expect("test headers have nonzero generations")
}

/// The default copy of a test shard.
pub(crate) fn key(id: u8, shard_index: u32) -> ShardKey {
    key_of(&header(id, shard_index))
}

/// A generation from a test number.
pub(crate) fn generation(n: u64) -> Generation {
    Generation::new(n).expect("nonzero")
}

/// Deterministic chunk contents, different per blob, shard and chunk.
pub(crate) fn chunk_data(header: &ShardFileHeader, index: u64) -> Bytes {
    let seed = u64::from(header.data_id.as_bytes()[0]) * 131 + u64::from(header.shard_index) * 7;
    (0..header.chunk_size)
        .map(|i| (u64::from(i).wrapping_mul(31) ^ index.wrapping_mul(17) ^ seed) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// The chunk hash of `data` as chunk `index` of the shard `header` describes.
pub(crate) fn hash_at(header: &ShardFileHeader, index: u64, data: &[u8]) -> Bytes {
    Bytes::copy_from_slice(&chunk_hash(
        &header.data_id,
        header.shard_index,
        index,
        data,
    ))
}

/// The digest of the test shard's first `chunks` chunks.
pub(crate) fn digest_of(header: &ShardFileHeader, chunks: u64) -> ShardDigest {
    let table: Vec<u8> = (0..chunks)
        .flat_map(|i| hash_at(header, i, &chunk_data(header, i)).to_vec())
        .collect();
    shard_digest(&header.data_id, header.shard_index, &table).expect("whole hashes")
}

/// Writes the test shard with `chunks` chunks through the store, as a writer would.
pub(crate) async fn write_shard(
    store: &ShardStore,
    header: ShardFileHeader,
    chunks: u64,
) -> WrittenShard {
    let mut writer = store.begin_write(header).await.unwrap();
    for i in 0..chunks {
        let data = chunk_data(&header, i);
        let hash = hash_at(&header, i, &data);
        writer = writer.write_chunk(i, data, hash).await.unwrap();
    }
    let digest = Bytes::copy_from_slice(&digest_of(&header, chunks));
    writer.commit(chunks, digest).await.unwrap()
}

/// A complete, self-consistent shard file for `header` holding `chunks`, with correct chunk
/// hashes and footer: what a writer with other content would have produced.
pub(crate) fn forge_file(header: &ShardFileHeader, chunks: &[Bytes]) -> Vec<u8> {
    let mut file = header.encode().to_vec();
    let mut table = Vec::new();
    for (i, data) in chunks.iter().enumerate() {
        file.extend_from_slice(data);
        table.extend_from_slice(&hash_at(header, i as u64, data));
    }
    let digest = shard_digest(&header.data_id, header.shard_index, &table).expect("whole hashes");
    file.extend_from_slice(&table);
    let footer = ShardFileFooter {
        chunks: chunks.len() as u64,
        digest,
    };
    file.extend_from_slice(&footer.encode());
    file
}

/// XORs the byte at `offset` with 0x5a.
pub(crate) fn flip_byte(path: &Path, offset: u64) {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, offset).unwrap();
    byte[0] ^= 0x5a;
    file.write_all_at(&byte, offset).unwrap();
}

/// Cuts the file to `len` bytes.
pub(crate) fn cut(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// File offset of chunk `index`'s entry in the hash table of a file of `chunks` chunks.
pub(crate) fn table_entry_offset(chunks: u64, index: u64) -> u64 {
    hash_table_offset(CHUNK, chunks) + index * HASH_LEN
}

/// Rewrites the footer so that it records the digest of the table now in the file: damage
/// that keeps the file self-consistent, so only the bound chunk hashes can reveal it.
pub(crate) fn refresh_footer(path: &Path, header: &ShardFileHeader, chunks: u64) {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut table = vec![0u8; (chunks * HASH_LEN) as usize];
    file.read_exact_at(&mut table, hash_table_offset(header.chunk_size, chunks))
        .unwrap();
    let digest = shard_digest(&header.data_id, header.shard_index, &table).unwrap();
    let footer = ShardFileFooter { chunks, digest };
    let len = file.metadata().unwrap().len();
    file.write_all_at(&footer.encode(), len - FOOTER_LEN)
        .unwrap();
}

/// Swaps chunks `a` and `b` of a file of `chunks` chunks, data and table entries together,
/// and refreshes the footer: the table still matches the data position for position in plain
/// blake3 terms, and the footer matches the table.
pub(crate) fn swap_chunks(path: &Path, header: &ShardFileHeader, chunks: u64, a: u64, b: u64) {
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let size = u64::from(header.chunk_size);
    let read = |offset: u64, len: u64| {
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, offset).unwrap();
        buf
    };
    let data_at = |i: u64| tessera_core::shard_file::chunk_offset(header.chunk_size, i);
    let (data_a, data_b) = (read(data_at(a), size), read(data_at(b), size));
    let entry = |i: u64| hash_table_offset(header.chunk_size, chunks) + i * HASH_LEN;
    let (hash_a, hash_b) = (read(entry(a), HASH_LEN), read(entry(b), HASH_LEN));
    file.write_all_at(&data_b, data_at(a)).unwrap();
    file.write_all_at(&data_a, data_at(b)).unwrap();
    file.write_all_at(&hash_b, entry(a)).unwrap();
    file.write_all_at(&hash_a, entry(b)).unwrap();
    drop(file);
    refresh_footer(path, header, chunks);
}

/// Replaces chunk `index` of the file at `path` (data and table entry) with chunk `index` of
/// the file at `from` (another shard or blob with the same chunk size), and refreshes the
/// footer.
pub(crate) fn transplant_chunk(
    path: &Path,
    header: &ShardFileHeader,
    chunks: u64,
    from: &Path,
    index: u64,
) {
    let source = fs::File::open(from).unwrap();
    let target = fs::OpenOptions::new().write(true).open(path).unwrap();
    let size = u64::from(header.chunk_size);
    let data_at = tessera_core::shard_file::chunk_offset(header.chunk_size, index);
    let mut data = vec![0u8; size as usize];
    source.read_exact_at(&mut data, data_at).unwrap();
    let source_chunks = (source.metadata().unwrap().len()
        - tessera_core::shard_file::file_len(header.chunk_size, 0))
        / (size + HASH_LEN);
    let mut hash = vec![0u8; HASH_LEN as usize];
    source
        .read_exact_at(
            &mut hash,
            hash_table_offset(header.chunk_size, source_chunks) + index * HASH_LEN,
        )
        .unwrap();
    target.write_all_at(&data, data_at).unwrap();
    target
        .write_all_at(
            &hash,
            hash_table_offset(header.chunk_size, chunks) + index * HASH_LEN,
        )
        .unwrap();
    drop(target);
    refresh_footer(path, header, chunks);
}

/// The names in the store's quarantine folder.
pub(crate) fn quarantined_names(store: &ShardStore) -> std::collections::BTreeSet<String> {
    match fs::read_dir(store.quarantine_dir()) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect(),
        Err(_) => std::collections::BTreeSet::new(),
    }
}
