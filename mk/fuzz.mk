# Fuzz targets (fuzz/, cargo-fuzz with libFuzzer, no nightly): the HTTP head parser, the
# client's HTTP answer reader, the config file, the archive reader, each run FUZZ_SECONDS
# (20) from the seeds in fuzz/corpus/; a crash or a broken property fails. Cold:
# cargo-fuzz and the targets build in about 3 min of CPU; warm about a minute.
.PHONY: fuzz
TEST_TARGETS += fuzz

fuzz: deps-fuzz
	bash scripts/fuzz.sh
