#pragma once
/// @file
/// Why a message left the spool outside POP3 (docs/spool.md, "Departure
/// records"): `sdps flush` and `sdps expire` note it in HOST/gone/UIDL just
/// before they remove the message, so that a POP3 session that listed the
/// message can tell the customer what became of it (the dummy notice,
/// format.hpp). Records are a courtesy to that session, not part of any
/// message: written without fsync, removed after a while.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace sdps::spoolstore {

/// The folder of departure records in a host folder.
inline constexpr const char* gone_folder = "gone";

/// How long a record is kept (a session that listed the message is over
/// long before): two days.
inline constexpr std::int64_t departure_record_seconds = 2 * 24 * 3600;

/// Why a message left.
enum class departure {
  delivered,  ///< `sdps flush` delivered it to the customer by SMTP
  returned,   ///< `sdps expire` bounced it (unread) to its sender, then removed it
  expired,    ///< `sdps expire` removed it without a bounce (read, or a bounce itself)
};

/// The word a record holds: "delivered", "returned", "expired".
const char* to_string(departure why);

/// Records that the message in `file` (ROOT/HOST/UIDL,...) is leaving for
/// `why`: HOST/gone/ (made if missing) gets a file named by its UIDL
/// holding "WORD TIME_US\n", written under a temporary name and renamed
/// into place. Best effort: false, with `error` set, when it could not be
/// written (the message may still be removed; its notice then says only
/// that it was removed).
bool record_departure(const std::filesystem::path& file, departure why, std::string& error);

/// The departure recorded for message `uidl` in `host_folder`; nullopt
/// when there is none (the message was removed by hand or by a POP3
/// session) or it cannot be read.
std::optional<departure> recorded_departure(const std::filesystem::path& host_folder, std::string_view uidl);

/// Removes the records in HOST/gone/ older than `max_age_seconds`. Best
/// effort; returns how many were removed.
std::size_t sweep_departures(const std::filesystem::path& host_folder,
                             std::int64_t max_age_seconds = departure_record_seconds);

/// record_departure, then remove_message (message_file.hpp): what flush
/// and expire do with a message that leaves. True if the message is gone;
/// false with `error` set if it could not be removed. A record that could
/// not be written does not stop the removal; it is reported in `note`.
bool depart(const std::filesystem::path& file, departure why, std::string& error, std::string& note);

}  // namespace sdps::spoolstore
