rule ingest:
    input:
        raw=raw_csvs,
        config=workflow.configfiles[0],
    output:
        "data/processed/comparisons.csv",
    log:
        "logs/ingest.log",
    run:
        with ntx.logged(log[0], "ingest"):
            ntx.ingest(input.config, output[0])
