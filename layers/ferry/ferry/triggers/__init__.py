"""What starts a deploy: ECR pushes (router) and release manifests dropped into S3 (manifest), and the
deploy requests both make (requests)."""
