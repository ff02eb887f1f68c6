#pragma once
/// @file
/// A stored message's file: its envelope, its read flag, the stream RETR
/// and TOP send (the Return-Path line, then the message), its removal.

#include "base/descriptor.hpp"
#include "spoolstore/format.hpp"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>

namespace sdps::spoolstore {

/// An open message file: its envelope, read flag, and the RETR stream.
/// Opening reads the file's first block (envelope header and, for a
/// small message, all of it) in one read; the stream serves what that
/// read brought before reading on.
class message_file {
 public:
  /// Opens `file`. Null if it does not exist (SMTP took it). Throws
  /// io_error if it cannot be read or its envelope header is damaged
  /// (code() EBADMSG).
  static std::unique_ptr<message_file> open(const std::filesystem::path& file);
  /// The same, for a path already in one string (the hot path: no
  /// std::filesystem::path is built).
  static std::unique_ptr<message_file> open(std::string file);
  message_file(const message_file&) = delete;
  message_file& operator=(const message_file&) = delete;

  const envelope_header& envelope() const { return envelope_; }
  /// The persistent read flag, as it was when the file was opened (or
  /// set through set_read_flag()).
  bool read_flag() const { return read_; }
  /// Sets the read flag through this open file (no second open), unless
  /// it is set. The file may have left the spool meanwhile: harmless.
  /// Throws io_error.
  void set_read_flag();
  /// Octets RETR sends: Return-Path line + stored message.
  std::uint64_t retr_size() const;

  /// Starts (or restarts) the stream RETR sends, before dot-stuffing: the
  /// Return-Path line, then the stored message; with `body_lines`, only
  /// the header and that many body lines (TOP).
  void rewind(std::optional<std::uint64_t> body_lines);
  /// Fills as much of `buffer` as the stream has left; 0 at the end (known
  /// from the file's size: no read for it). Reads the file piece by piece
  /// (never all of it at once). Throws io_error on a read error.
  std::size_t read(std::span<char> buffer);

 private:
  message_file(base::unique_fd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

  base::unique_fd fd_;
  std::string path_;
  envelope_header envelope_;
  std::uint64_t body_offset_ = 0;
  std::uint64_t file_size_ = 0;
  bool read_ = false;
  /// The file's first octets, as open() read them (not zeroed first: a
  /// message's open costs no memset).
  std::unique_ptr<char[]> head_;
  std::size_t head_size_ = 0;
  /// The Return-Path line RETR sends first (built once, at open).
  std::string prefix_;
  // stream state
  std::size_t prefix_sent_ = 0;
  std::uint64_t offset_ = 0;  // into the stored message (after the envelope)
  top_filter top_{std::nullopt};
};

/// The read flag of `file`: nullopt if it is gone. Throws io_error.
std::optional<bool> read_flag(const std::filesystem::path& file);
/// Sets the read flag (the owner-execute permission bit) without renaming
/// the file. False if the file is gone. Throws io_error.
bool set_read_flag(const std::filesystem::path& file);

/// Unlinks `file`. True if it is gone now (including when it was already
/// gone); false with `error` set otherwise.
bool remove_message(const std::filesystem::path& file, std::string& error);

}  // namespace sdps::spoolstore
