"""Where a compile's inputs come from: the spec the CLI builds, .npz / text / image / hook sources,
synthesized feeds, and the one FeedSet (fit / search / held-out / training) made from them."""
