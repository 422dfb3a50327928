# Mutation testing (docs/mutants.md). Included by the top Makefile.
#   make mutants       both runs below; each fails when fewer than 95% of the viable
#                      mutants are caught (a timeout counts as caught) and lists the
#                      missed ones, to be compared with the survivors docs/mutants.md
#                      explains.
#   make mutants-unit  the pure cores and the offsite/SMTP logic, against the unit
#                      tests of the binary (the in-memory store's included)
#   make mutants-it    downloads and the restore's target files, against the groups
#                      of the black-box tests that exercise them
# NOT in TEST_TARGETS (neither `make test` nor CI runs it): about a thousand mutants,
# each an incremental build and a test run; see docs/mutants.md for the times.
# Needs cargo-mutants: cargo install cargo-mutants --locked. Reports in target/mutants
# and target/mutants-it.

MUTANTS_FILES := src/retention.rs src/schedule.rs src/clock.rs src/config/mod.rs \
                 src/bucket/sigv4.rs src/http/head.rs \
                 src/offsite/gc.rs src/offsite/video_put.rs src/smtp/mod.rs \
                 src/store.rs src/backup/archive.rs src/videos/inventory.rs
# Whole files first; then, in the last three, only the pure functions (archive names,
# the manifest, inventory escaping): the rest of them does I/O, which the black-box
# tests in tests/ cover. A return-value mutant is named "replace F -> ...", the others
# "... in F". cargo-mutants 27.1 adds one struct-field mutant of archive.rs (`verify`,
# the field old_format) whatever --re and --exclude-re say: it is tested too.
MUTANTS_RE := ^src/(retention|schedule|clock|config/mod|bucket/sigv4|http/head|offsite/gc|offsite/video_put|smtp/mod)\.rs:|(in|replace) (is_archive_name|stem_for|stem_of|name_time|manifest_line|parse_manifest|safe_inner_path|escape_path|unescape_path)\b
MUTANTS_MIN_SCORE := 95

# Files whose behaviour the black-box tests pin (downloads, the restore's target
# files): each mutant runs their unit tests and the groups of tests/it that exercise
# them (the filters select both).
MUTANTS_IT_FILES := src/serve/download.rs src/restore/target.rs
MUTANTS_IT_RE := ^src/(serve/download|restore/target)\.rs:
MUTANTS_IT_TESTS := download restore:: field::restore

# The SMTP tests need .xtools/smtp-venv (git-ignored) in the copied tree: cargo-mutants
# 27.1 copies ignored files by default (`--gitignore` is off), and refuses an explicit
# `--gitignore false` together with `--copy-target`: only the latter is given.
.PHONY: mutants mutants-unit mutants-it
mutants: mutants-unit mutants-it

mutants-unit:
	@cargo mutants --version >/dev/null 2>&1 || { \
	  echo "make mutants: cargo-mutants is missing (cargo install cargo-mutants --locked)"; exit 1; }
	status=0; $(CARGO) mutants $(addprefix --file ,$(MUTANTS_FILES)) \
	  --re '$(MUTANTS_RE)' \
	  --cargo-test-arg=--bin --cargo-test-arg=neopro-backup \
	  -j2 --minimum-test-timeout 30 --copy-target=true -o target/mutants || status=$$?; \
	case $$status in 0|2|3) ;; *) echo "cargo mutants failed ($$status)"; exit $$status;; esac; \
	bash scripts/mutants-score.sh target/mutants/mutants.out $(MUTANTS_MIN_SCORE)

mutants-it:
	@cargo mutants --version >/dev/null 2>&1 || { \
	  echo "make mutants: cargo-mutants is missing (cargo install cargo-mutants --locked)"; exit 1; }
	status=0; $(CARGO) mutants $(addprefix --file ,$(MUTANTS_IT_FILES)) \
	  --re '$(MUTANTS_IT_RE)' -j2 --minimum-test-timeout 60 --copy-target=true \
	  -o target/mutants-it -- --bin neopro-backup --test it -- $(MUTANTS_IT_TESTS) || status=$$?; \
	case $$status in 0|2|3) ;; *) echo "cargo mutants failed ($$status)"; exit $$status;; esac; \
	bash scripts/mutants-score.sh target/mutants-it/mutants.out $(MUTANTS_MIN_SCORE)
