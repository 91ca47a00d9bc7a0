def test_probe(mlflow_server):
    import urllib.request
    assert urllib.request.urlopen(mlflow_server + "/health").status == 200
