rule ingest:
    input:
        raw=raw_csvs,
        config=CONFIG_FILE,
        rob=rob_table,
    output:
        update("data/processed/comparisons.csv"),
    log:
        "logs/ingest.log",
    run:
        ntx.rule_ingest(PREFLIGHT, output, log[0])
