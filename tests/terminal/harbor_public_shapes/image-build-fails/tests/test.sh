#!/bin/bash
test -f /app/done
