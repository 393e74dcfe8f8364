#!/usr/bin/env Rscript
## Times metafor's rma() for bench/bench.py on the same data the Python peers get.
## Usage: Rscript metafor_bench.R JOBS.tsv
##   JOBS.tsv: one job a line, tab-separated: label, csv path (columns yi, vi), method, repeats.
## For each job prints one line
##   RESULT <label> <median elapsed s> <fastest elapsed s> <tau2> <peak Mb>
## where the elapsed time is system.time() around one rma() call (default control, as a
## user gets it) and the peak is R's own "max used" memory (gc(reset = TRUE) before the
## call, Ncells + Vcells) minus what was in use before it.
suppressPackageStartupMessages(library(metafor))
cat("VERSIONS R", paste(R.version$major, R.version$minor, sep = "."),
    "metafor", as.character(packageVersion("metafor")), "BLAS", sessionInfo()$BLAS, "\n")
jobs <- read.delim(commandArgs(trailingOnly = TRUE)[1], header = FALSE,
                   col.names = c("label", "csv", "method", "reps"), stringsAsFactors = FALSE)
for (j in seq_len(nrow(jobs))) {
  d <- read.csv(jobs$csv[j])
  times <- numeric(0)
  peak <- NA
  fit <- NULL
  for (r in seq_len(jobs$reps[j])) {
    before <- sum(gc(reset = TRUE)[, 2])
    times <- c(times, system.time(fit <- rma(d$yi, d$vi, method = jobs$method[j]))[["elapsed"]])
    peak <- max(peak, sum(gc()[, 6]) - before, na.rm = TRUE)
  }
  cat(sprintf("RESULT %s %.6f %.6f %.15g %.3f\n", jobs$label[j], median(times), min(times),
              fit$tau2, peak))
  flush(stdout())
}
