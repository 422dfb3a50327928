# Mutation testing of the pure cores (docs/mutants.md). Included by the top Makefile.
#   make mutants   cargo-mutants over the files and functions below, against the unit
#                  tests of the binary only; fails when fewer than 95% of the viable
#                  mutants are caught (a timeout counts as caught) and lists the missed
#                  ones, to be compared with the survivors docs/mutants.md explains.
# NOT in TEST_TARGETS (neither `make test` nor CI runs it): 764 mutants, each an
# incremental build and a unit test run; 37 minutes end to end on two idle cores
# (about 75 on two busy ones).
# Needs cargo-mutants: cargo install cargo-mutants --locked. Report in target/mutants.

MUTANTS_FILES := src/retention.rs src/schedule.rs src/clock.rs src/config/mod.rs \
                 src/bucket/sigv4.rs src/http/head.rs \
                 src/offsite/gc.rs \
                 src/store.rs src/backup/archive.rs src/videos/inventory.rs
# Whole files first; then, in the last three, only the pure functions (archive names,
# the manifest, inventory escaping): the rest of them does I/O, which the black-box
# tests in tests/ cover. A return-value mutant is named "replace F -> ...", the others
# "... in F". cargo-mutants 27.1 adds one struct-field mutant of archive.rs (`verify`,
# the field old_format) whatever --re and --exclude-re say: it is tested too.
MUTANTS_RE := ^src/(retention|schedule|clock|config/mod|bucket/sigv4|http/head|offsite/gc)\.rs:|(in|replace) (is_archive_name|stem_for|stem_of|name_time|manifest_line|parse_manifest|safe_inner_path|escape_path|unescape_path)\b
MUTANTS_MIN_SCORE := 95

.PHONY: mutants
mutants:
	@cargo mutants --version >/dev/null 2>&1 || { \
	  echo "make mutants: cargo-mutants is missing (cargo install cargo-mutants --locked)"; exit 1; }
	status=0; $(CARGO) mutants $(addprefix --file ,$(MUTANTS_FILES)) \
	  --re '$(MUTANTS_RE)' \
	  --cargo-test-arg=--bin --cargo-test-arg=neopro-backup \
	  -j2 --minimum-test-timeout 10 --copy-target=true -o target/mutants || status=$$?; \
	case $$status in 0|2|3) ;; *) echo "cargo mutants failed ($$status)"; exit $$status;; esac; \
	cd target/mutants/mutants.out && \
	caught=$$(cat caught.txt timeout.txt | wc -l) && missed=$$(wc -l < missed.txt) && \
	echo "mutants: $$caught of $$((caught + missed)) viable caught; missed:" && cat missed.txt && \
	test $$((caught * 100)) -ge $$(( (caught + missed) * $(MUTANTS_MIN_SCORE) ))
