#pragma once
/// @file
/// Crash-safe delivery into a spool: what `sdps deliver` does.

#include "spoolstore/format.hpp"

#include <sdps/log.hpp>

#include <filesystem>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

namespace sdps::spoolstore {

/// One envelope recipient, already checked by the caller.
struct recipient {
  std::string address;     ///< stored as Envelope-To: "fred@sample.demon.co.uk"
  std::string local_part;  ///< "fred": 1 to max_local_part octets, what user logins match
  std::string host;        ///< "sample": valid_host()
};

/// A punt the message may go to.
struct punt_target {
  std::string name;             ///< "finchley"
  std::filesystem::path root;   ///< its spool folder
};

/// One stored copy (one per recipient).
struct stored_copy {
  std::string punt;
  std::string host;
  std::string uidl;
  std::uint64_t size = 0;       ///< what LIST will say
  std::filesystem::path file;   ///< the message file
};

/// The message could not be stored. Nothing became visible unless
/// `partial()` (some copies were stored before a later step failed; a
/// retry may then duplicate those, which beats losing the others).
class delivery_error : public std::runtime_error {
 public:
  delivery_error(const std::string& what, bool partial) : std::runtime_error(what), partial_(partial) {}
  bool partial() const { return partial_; }

 private:
  bool partial_;
};

/// Fills a prefix of the buffer with the next octets of the message;
/// returns 0 at its end. May throw (a read error fails the delivery).
using input_reader = std::function<std::size_t(std::span<char>)>;

/// Fault injection for unit tests only: when set, called before every
/// write to a delivery's temporary file with that file's path; a non-zero
/// return fails the write with that errno value (ENOSPC, EIO...). Not
/// thread-safe; never set outside tests.
extern std::function<int(const std::filesystem::path&)> write_fault_for_tests;

/// Stores the message read from `input` once per recipient, in the first
/// punt of `punts` that takes it, falling back to the next one when a punt
/// cannot be written (folders, open, write, fsync), also half way through
/// the message (what was written is copied over). The message is read
/// once and streamed: each chunk is CRLF-normalised (crlf_normaliser) into
/// the first copy's temporary file; other recipients' copies are made from
/// that file. Each copy: its own envelope header and UIDL, written in
/// HOST/tmp/, fsynced, linked into HOST/ under its final name, then HOST/
/// fsynced. `from` is the sender without angle brackets (empty for the
/// null sender). Throws std::invalid_argument for a bad sender or
/// recipient, delivery_error when nothing (or not everything) was stored.
/// Blocking.
std::vector<stored_copy> deliver(const std::vector<punt_target>& punts, const std::string& from,
                                 const std::vector<recipient>& to, const input_reader& input, logger* log);

}  // namespace sdps::spoolstore
