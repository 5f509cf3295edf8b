# Doxygen input filter for the Markdown pages of docs/ (Doxyfile.in,
# FILTER_PATTERNS). The pages are written for reading on a forge, where
# GitHub-style heading anchors and relative links to repository files work;
# Doxygen 1.9 knows neither, so both become plain text in the HTML version:
#   [text](#heading-anchor)  ->  text
#   [text](../path/file)     ->  text
s/\[([^]]*)\]\(#[^)]*\)/\1/g
s/\[([^]]*)\]\(\.\.\/[^)]*\)/\1/g
