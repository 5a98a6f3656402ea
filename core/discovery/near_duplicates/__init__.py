"""Near-duplicates: the same launch posted to HN, Reddit and Product Hunt in different words.

Two opportunities are near-duplicates, and share a cluster, when any of these holds:

1. The same product URL: one canonical URL outside aggregator sites (news.ycombinator.com, x.com,
   ...), or the same github.com/<owner>/<repo>.
2. The same product, named by the URL alone (`product_name`, `name_keys`): a site's home or
   pricing page names it by its host (shotapi.io -> "shotapi"), a listing by its slug
   (producthunt.com/products/shotapi, freepublicapis.com/shotapi) or, on GitHub, by a repository
   whose owner is named after it (shotapi/shotapi, shotapi-dev/shotapi-cli). A listing matches the
   sites and listings of its name; a site's page matches the other pages of its own host (not
   another TLD: pulse.io and pulse.dev are often two companies). A listing and the site it lists
   rarely share a title word beyond the name, so no similarity is asked for.
3. The same revenue figure and at least two more words in common (`figure_words`: figures of
   $1,000 or more that are not round, such as "$4.2k MRR" or "$7,850"; smaller amounts are mostly
   prices and round figures like "$10k" are said by many unrelated posts; units like MRR do not
   count as words).
4. A shared LSH bucket and an estimated Jaccard similarity of at least THRESHOLD (0.5).

Similarity is estimated by MinHash signatures (datasketch's, computed in bulk) over a token set of
the normalized title's words and word pairs plus the site's host, banded for LSH. The band buckets,
the product names and the (figure, word) pairs are persisted in core.lsh_buckets (the last two as
extra "bands", NAME_BAND and FIGURE_BAND), the signatures in core.lsh_signatures, so each run only
hashes its new opportunities and looks them up in the index: incremental, and shared by every
process that can reach the warehouse. Opportunities indexed before rules 2 and 3 existed have no
name or figure rows, so only rules 1 and 4 find them. Near-duplicates are clustered (same
cluster_id), never dropped: a cluster is one opportunity seen in several places, which is itself a
signal.

Measured on the hand-labelled pairs in tests/fixtures/near_duplicate_pairs.csv, on each half of a
fixed split by launch (tests/unit/test_near_duplicate_quality.py, benchmarks/README.md): rules 1
and 4 alone found 41% of the duplicates, all four find 82%; precision 0.99 (one false match of
rule 4, two short directory titles). Rule 3 first asked
for an estimated Jaccard of 0.2 instead of two shared words: a short title is mostly its figure's
tokens ("$5", "1k", "month"), so "My newsletter made $5.1k/month from sponsors" matched a content
site's "$5.1k/month" report.

The modules: `rules` (rules 1-3 and the token sets, plain Python), `minhash` (signatures, LSH bands,
similarity), `index` (`assign_clusters`, `are_near_duplicates`, the persisted index). This file
imports nothing, so that importing one of them does not import the others.
"""
