// Made tests/leveldb/libleveldb_1.23 with Debian's libleveldb 1.23 (C++, the library Caffe links):
//   g++ make_libleveldb_set.cc -o mk -lleveldb && ./mk write libleveldb_1.23 twice
//   rm libleveldb_1.23/LOCK libleveldb_1.23/LOG*
// It writes the way Caffe's convert_mnist_data does (snappy, 256 MB write buffer, batches of 1000,
// keys %08d; Datum bytes encoded by hand: 1x28x28, pixel k of record i = (7i + k) mod 256,
// label i mod 10): 200 records, closed, reopened (the log becomes a snappy table), 20 more left
// in the log. `./mk read DIR` lists a set (how crema's LevelDBs were checked with libleveldb).
#include <leveldb/db.h>
#include <leveldb/write_batch.h>
#include <cstdio>
#include <string>
static void varint(std::string& s, unsigned long v) { while (v >= 128) { s += char(v | 128); v >>= 7; } s += char(v); }
static const int N = 200;
int main(int argc, char** argv) {
  leveldb::DB* db; leveldb::Options o;
  if (std::string(argv[1]) == "write") {
    o.error_if_exists = true; o.create_if_missing = true; o.write_buffer_size = 268435456;
    if (!leveldb::DB::Open(o, argv[2], &db).ok()) return 1;
    leveldb::WriteBatch* b = new leveldb::WriteBatch();
    for (int i = 0; i < N; i++) {
      std::string d; d += char(8); varint(d, 1); d += char(16); varint(d, 28); d += char(24); varint(d, 28);
      d += char(34); varint(d, 784); for (int k = 0; k < 784; k++) d += char((i * 7 + k) % 256);
      d += char(40); varint(d, i % 10);
      char key[16]; snprintf(key, 16, "%08d", i);
      b->Put(key, d);
      if ((i + 1) % 1000 == 0 || i == N - 1) { db->Write(leveldb::WriteOptions(), b); delete b; b = new leveldb::WriteBatch(); }
    }
    delete b; delete db;
    if (argc > 3) {  // reopen (the log becomes a snappy table), then 20 more records left in the log
      o.error_if_exists = false;
      if (!leveldb::DB::Open(o, argv[2], &db).ok()) return 1;
      for (int i = N; i < N + 20; i++) {
        std::string d; d += char(8); varint(d, 1); d += char(16); varint(d, 28); d += char(24); varint(d, 28);
        d += char(34); varint(d, 784); for (int k = 0; k < 784; k++) d += char((i * 7 + k) % 256);
        d += char(40); varint(d, i % 10);
        char key[16]; snprintf(key, 16, "%08d", i);
        db->Put(leveldb::WriteOptions(), key, d);
      }
      delete db;
    }
    return 0;
  }
  if (!leveldb::DB::Open(o, argv[2], &db).ok()) return 1;
  leveldb::Iterator* it = db->NewIterator(leveldb::ReadOptions());
  long n = 0, bytes = 0; std::string first, last;
  for (it->SeekToFirst(); it->Valid(); it->Next()) { if (!n) first = it->key().ToString(); last = it->key().ToString(); n++; bytes += it->value().size(); }
  printf("records %ld value bytes %ld first %s last %s status %s\n", n, bytes, first.c_str(), last.c_str(), it->status().ToString().c_str());
  delete it; delete db; return 0;
}
