-- Run once by the postgres image on an empty volume: MLflow's database beside Dagster's (POSTGRES_DB).
CREATE DATABASE mlflow;
