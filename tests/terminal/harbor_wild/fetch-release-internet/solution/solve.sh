#!/bin/bash
curl -fsSL https://example.com/releases/latest.txt -o /app/RELEASE.txt
