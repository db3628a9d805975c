"""Network modules of TextDiffSeg, one per file; ``textdiffseg.networks.model`` assembles them."""
