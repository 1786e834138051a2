"""The codecs: the .fcz format (format), its entropy coding (entropy, detail_coder), writing and
reading files (fcz), the byte-budget search (budget), the pictures decoders draw (pictures), the
classic formats (classic) and the one interface all of them share (codecs)."""
