// A main() for the fuzz targets in the ordinary (GCC, sanitizer) build:
// feeds every file under the folders or files named on the command line to
// LLVMFuzzerTestOneInput once, so ctest replays the seed corpus and the
// regression inputs. A failed property aborts, which fails the test.

#include "fuzz.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

namespace fs = std::filesystem;

int main(int argc, char** argv) {
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    const fs::path where(argv[i]);
    if (fs::is_directory(where)) {
      for (const auto& entry : fs::recursive_directory_iterator(where))
        if (entry.is_regular_file()) files.push_back(entry.path());
    } else if (fs::is_regular_file(where)) {
      files.push_back(where);
    } else {
      std::cerr << argv[i] << ": no such file or folder\n";
      return 2;
    }
  }
  std::sort(files.begin(), files.end());
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::cerr << file.string() << ": cannot read\n";
      return 2;
    }
    std::cerr << "replaying " << file.string() << "\n";
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  }
  std::cout << files.size() << " inputs replayed\n";
  return 0;
}
